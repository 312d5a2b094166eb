//go:build tools

// Package kuberouter pins kube-router for ../build.sh, which builds its command
// github.com/cloudnativelabs/kube-router/v2/cmd/kube-router from this module.
package kuberouter

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
