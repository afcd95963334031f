package k8s

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	wsedgev1 "github.com/wsedge/wsedge/operator/api/v1alpha1"
)

// KubeVersion is the version the chart is rendered for; the control plane
// built by hack/k8s-tools.sh serves the same.
const KubeVersion = "v1.37.1"

// CRD-provided API versions the chart looks for with .Capabilities.
var (
	MonitoringAPIs = []string{"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"}
	GatewayAPIs    = []string{"gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1/HTTPRoute"}
)

// Render renders the chart in chartDir with values (YAML) the way `helm
// install` would (schema validation included), for a cluster that serves the
// built-in APIs plus extraAPIs. It returns the manifests in install order.
func Render(chartDir, release, namespace, values string, extraAPIs []string) ([]string, error) {
	ch, err := loader.LoadDir(chartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	caps := common.DefaultCapabilities.Copy()
	kv, err := common.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, err
	}
	caps.KubeVersion = *kv
	caps.APIVersions = append(caps.APIVersions, extraAPIs...)
	top, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return nil, err
	}
	// NOTES.txt and helpers are not manifests.
	for name := range files {
		if filepath.Ext(name) != ".yaml" {
			delete(files, name)
		}
	}
	_, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("sort manifests: %w", err)
	}
	var out []string
	for _, m := range manifests {
		if strings.TrimSpace(m.Content) != "" {
			out = append(out, m.Content)
		}
	}
	return out, nil
}

// Scheme knows every kind the chart can render.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, gatewayv1.Install, monitoringv1.AddToScheme, wsedgev1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// DecodeStrict decodes each manifest into its typed Go struct, failing on
// unknown or duplicate fields (a typo in a template shows up here).
func DecodeStrict(s *runtime.Scheme, manifests []string) ([]runtime.Object, error) {
	ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true, Strict: true})
	var objs []runtime.Object
	for _, m := range manifests {
		obj, gvk, err := ser.Decode([]byte(m), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decode %v: %w\n%s", gvk, err, m)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// Kinds lists "Kind/name" of objs, sorted, for messages and comparisons.
func Kinds(objs []runtime.Object) []string {
	var out []string
	for _, o := range objs {
		gvk := o.GetObjectKind().GroupVersionKind()
		name := ""
		if m, ok := o.(interface{ GetName() string }); ok {
			name = m.GetName()
		}
		out = append(out, gvk.Kind+"/"+name)
	}
	sort.Strings(out)
	return out
}
