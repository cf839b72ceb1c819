// Package proto documents the contract the scaler implements: KEDA's
// externalscaler gRPC service. externalscaler.proto beside this file is a
// byte-for-byte copy of the one in the KEDA module pinned in go.mod, kept
// here so that the contract can be read (and given to grpcurl) without
// fetching KEDA. The Go code is never generated here: the service uses
// github.com/kedacore/keda/v2/pkg/scalers/externalscaler, KEDA's own
// generated package, and a test fails when the copy drifts from it.
package proto
