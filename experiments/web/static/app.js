// A run in progress: ask the server every 2 s how far it is. Its running counts are
// updated in place; the page is redrawn (at the same scroll position) when its ledger
// history grows, so its timeline grows too; the finished run's page opens once the
// directory is renamed.
"use strict";
(function () {
  const url = document.body.dataset.poll;
  if (!url) return;
  const seen = document.body.dataset.events;
  const kept = sessionStorage.getItem("scroll:" + url);
  if (kept !== null) window.scrollTo(0, Number(kept));
  function show(status) {
    if (!status) return;
    const fields = {phase: status.phase, elapsed: Number(status.elapsed).toFixed(1),
                    executions: status.executions, lost: status.lost,
                    duplicated: status.duplicated, faults: status.faults.length,
                    targets: status.faults.join(", ")};
    for (const [name, value] of Object.entries(fields)) {
      for (const el of document.querySelectorAll('[data-field="' + name + '"]')) {
        el.textContent = String(value);
        if (name === "lost" || name === "duplicated") {
          el.parentElement.classList.toggle("some", Number(value) > 0);
        }
      }
    }
  }
  setInterval(async function () {
    try {
      const state = await (await fetch(url, {cache: "no-store"})).json();
      if (state.href) {
        sessionStorage.removeItem("scroll:" + url);
        window.location.assign(state.href);
        return;
      }
      show(state.status);
      if (state.state === "in-progress" && String(state.events_bytes) !== seen) {
        sessionStorage.setItem("scroll:" + url, String(window.scrollY));
        window.location.reload();
      }
    } catch (e) { /* the server stopped, or the run moved: try again */ }
  }, 2000);
})();
