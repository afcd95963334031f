package k8s

// Value sets every test renders: each is a way the chart is meant to be
// installed. Production sets name a Secret (the chart never holds secrets).
const (
	Secrets = "secrets: {existingSecret: wsedge-secrets}\n"
	Prod    = Secrets + "config: {allowedHosts: app.example.com}\n"
)

// ValueSet is one way the chart is meant to be installed.
type ValueSet struct {
	Name   string
	Values string   // values.yaml
	APIs   []string // CRD-provided APIs the cluster serves
}

// ValueSets are rendered and checked by TestRender, linted and validated by
// the API server in test/k8s/cluster.
var ValueSets = []ValueSet{
	{"debug defaults", `config: {debug: true}`, nil},
	{"production, one replica", Prod, nil},
	{"ALB, Redis, 3 replicas, drain 120s", Prod + `
replicaCount: 3
redis: {existingSecret: redis-creds}
drain: {timeoutSeconds: 120, preStopSeconds: 7}
ingress:
  enabled: true
  hosts: [app.example.com]
  alb: {certificateArn: "arn:aws:acm:eu-west-1:123456789012:certificate/abc", slowStartSeconds: 60}
  annotations: {alb.ingress.kubernetes.io/wafv2-acl-arn: "arn:aws:wafv2:x"}
`, nil},
	{"HPA on CPU and connections", Prod + `
redis: {url: "redis://redis.default.svc:6379/0"}
autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 20, targetConnectionsPerPod: 20000}
`, nil},
	{"operator manages replicas", Prod + `
redis: {url: "redis://redis:6379/0"}
operator: {enabled: true, adminToken: {existingSecret: wsedge-admin}}
autoscaling: {enabled: true}
`, nil},
	{"operator tuned", Prod + `
redis: {existingSecret: redis-creds}
admin: {port: 9191}
operator:
  enabled: true
  replicas: 2
  image: {repository: registry.example.com/wsedge-operator, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
  adminToken: {existingSecret: edge-admin, key: ADMIN_TOKEN}
  minReplicas: 3
  maxReplicas: 40
  targetConnectionsPerPod: 20000
  targetMemoryBytesPerPod: 3221225472
  scaleDown: {stabilizationWindowSeconds: 900, maxPods: 2, periodSeconds: 600}
  rebalance: {thresholdPercent: 15, maxEvictionsPerSecond: 200, maxPercentPerRound: 5}
  drain: {spreadSeconds: 30, jitterSeconds: 10}
`, nil},
	{"Gateway API, IRSA, PDB minAvailable, digest", Prod + `
httpRoute: {enabled: true, parentRefs: [{name: public, namespace: gateways}], hostnames: [app.example.com]}
serviceAccount: {annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/wsedge-bedrock"}}
pdb: {minAvailable: 1, maxUnavailable: null}
image: {repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/wsedge, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
`, GatewayAPIs},
	{"monitoring CRDs present", Secrets + `
config: {allowedHosts: app.example.com, maxConnections: 50000}
dashboards: {enabled: true}
`, MonitoringAPIs},
	{"monitoring CRDs absent", Prod, nil},
}

// BadValues must fail at install with these message parts: in TestBadValues
// (Helm SDK) and in test/k8s/cluster (the helm CLI).
var BadValues = []struct {
	Name   string
	Values string
	Want   []string
}{
	{"3 replicas without Redis", Prod + "replicaCount: 3\n", []string{"more than one replica", "needs Redis", "redis.url or redis.existingSecret"}},
	{"autoscaling without Redis", Prod + "autoscaling: {enabled: true}\n", []string{"needs Redis"}},
	{"negative drain", Prod + "drain: {timeoutSeconds: -5}\n", []string{"/drain/timeoutSeconds", "minimum"}},
	{"unknown top-level key", Prod + "replicas: 2\n", []string{"additional properties 'replicas' not allowed"}},
	{"unknown nested key", Prod + "ingress: {alb: {idleTimeout: 3600}}\n", []string{"/ingress/alb", "additional properties 'idleTimeout' not allowed"}},
	{"secret in config.env", Secrets + "config: {allowedHosts: a.example.com, env: {SECRET_KEY: x}}\n", []string{"invalid propertyName 'SECRET_KEY'"}},
	{"production without a Secret", "config: {allowedHosts: app.example.com}\n", []string{"secrets.existingSecret is required"}},
	{"idle timeout below ping", Prod + "ingress: {enabled: true, alb: {idleTimeoutSeconds: 10}}\n", []string{"idleTimeoutSeconds must exceed config.pingInterval"}},
	{"ready threshold over max", Secrets + "config: {allowedHosts: a.example.com, maxConnections: 100, readyMaxConnections: 200}\n", []string{"readyMaxConnections must not exceed"}},
	{"operator without an admin token", Prod + "redis: {url: \"redis://r:6379/0\"}\noperator: {enabled: true}\n", []string{"operator.adminToken.existingSecret is required"}},
	{"operator max below min", Prod + "redis: {url: \"redis://r:6379/0\"}\noperator: {enabled: true, adminToken: {existingSecret: a}, minReplicas: 5, maxReplicas: 3}\n",
		[]string{"operator.maxReplicas must be at least operator.minReplicas"}},
	{"operator sheds a whole pod per round", Prod + "redis: {url: \"redis://r:6379/0\"}\noperator: {enabled: true, adminToken: {existingSecret: a}, rebalance: {maxPercentPerRound: 100}}\n",
		[]string{"/operator/rebalance/maxPercentPerRound"}},
	{"bad duration", Secrets + "config: {allowedHosts: a.example.com, pingInterval: soon}\n", []string{"/config/pingInterval"}},
}
