// Package k8s tests the Helm chart against a real Kubernetes control plane:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
// (fake nodes whose pods "run" without containers), all built from source by
// hack/k8s-tools.sh. No Docker and no kind. The control plane itself is
// started by the kubecluster module, which the operator's tests share.
package k8s

import (
	"context"

	"github.com/wsedge/wsedge/test/k8s/kubecluster"
)

type (
	// Tools is the directory hack/k8s-tools.sh built.
	Tools = kubecluster.Tools
	// Cluster is one running control plane.
	Cluster = kubecluster.Cluster
	// Options says which parts beyond etcd and kube-apiserver to run.
	Options = kubecluster.Options
)

// FindTools runs hack/k8s-tools.sh and returns its directory.
func FindTools(repoRoot string) (Tools, error) { return kubecluster.FindTools(repoRoot) }

// Start brings up a control plane in dir (which the caller removes).
func Start(ctx context.Context, tools Tools, dir string, opt Options) (*Cluster, error) {
	return kubecluster.Start(ctx, tools, dir, opt)
}
