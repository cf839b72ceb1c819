//go:build tools

// Package tools pins etcd for the end-to-end tests (make e2e builds it).
package tools

import _ "go.etcd.io/etcd/server/v3"
