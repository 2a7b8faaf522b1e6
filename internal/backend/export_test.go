package backend

// TestBackend runs the conformance suite from the external test package
// (which may import the agent server without an import cycle).
var TestBackend = testBackend
