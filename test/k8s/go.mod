// Kubernetes tests of the chart against a real control plane: a nested module
// so the Helm SDK and client-go stay out of the server's go.mod.
module github.com/wsedge/wsedge/test/k8s

go 1.26.8
