//go:build tools

// Package tools pins the KEDA operator (v2.21.0) for the end-to-end tests.
package tools

import _ "github.com/kedacore/keda/v2/cmd/operator"
