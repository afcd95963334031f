// A real Kubernetes control plane for tests (etcd, kube-apiserver and,
// optionally, kube-controller-manager, kube-scheduler and kwok), standard
// library only, shared by test/k8s and the operator's end-to-end test.
module github.com/wsedge/wsedge/test/k8s/kubecluster

go 1.26.8
