// Package test holds the tests of what the project ships (charts,
// manifests, Dockerfiles, the agent's start script) and its end-to-end
// tests. It is a module of its own so that Helm, BuildKit and KEDA's API
// types stay out of the scaler's go.mod.
package test
