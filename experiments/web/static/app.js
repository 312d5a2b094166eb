// A run in progress: ask the server every 2 s how far it is; reload when its ledger
// history grows, open the finished run's page when the directory is renamed.
"use strict";
(function () {
  const url = document.body.dataset.poll;
  if (!url) return;
  const seen = document.body.dataset.events;
  setInterval(async function () {
    try {
      const state = await (await fetch(url, {cache: "no-store"})).json();
      if (state.href) window.location.assign(state.href);
      else if (state.state === "in-progress" && String(state.events_bytes) !== seen) window.location.reload();
    } catch (e) { /* the server stopped, or the run moved: try again */ }
  }, 2000);
})();
