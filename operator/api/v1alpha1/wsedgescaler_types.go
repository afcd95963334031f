package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ScaleTargetRef names the Deployment whose replica count the scaler owns.
type ScaleTargetRef struct {
	// APIVersion of the target; only apps/v1 is supported.
	// +kubebuilder:default="apps/v1"
	// +kubebuilder:validation:Enum="apps/v1"
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`
	// Kind of the target; only Deployment is supported.
	// +kubebuilder:default=Deployment
	// +kubebuilder:validation:Enum=Deployment
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name of the Deployment in the scaler's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ScalingRules limit how fast the replica count moves in one direction.
type ScalingRules struct {
	// StabilizationWindowSeconds: the recommendation must hold for this long
	// before it is applied (up: the lowest recommendation of the window is
	// used; down: the highest), so a short spike or dip changes nothing.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	// +optional
	StabilizationWindowSeconds *int32 `json:"stabilizationWindowSeconds,omitempty"`
	// MaxPods is the most pods added (or removed) within PeriodSeconds.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxPods *int32 `json:"maxPods,omitempty"`
	// PeriodSeconds is the window MaxPods applies to.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	// +optional
	PeriodSeconds *int32 `json:"periodSeconds,omitempty"`
}

// Rebalance moves sockets from pods above the mean to the others (by asking
// the busy pods to shed some with reconnect hints), after a scale-up or
// whenever the load is uneven.
type Rebalance struct {
	// Enabled turns rebalancing on.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// ThresholdPercent: a pod is over when it holds more than the mean by
	// this percentage; rebalancing stops once no pod is over.
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	ThresholdPercent int32 `json:"thresholdPercent,omitempty"`
	// MaxEvictionsPerSecond caps the sockets closed per second across the
	// whole Deployment (all pods together).
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxEvictionsPerSecond int32 `json:"maxEvictionsPerSecond,omitempty"`
	// MaxPercentPerRound caps the share of one pod's sockets shed in one
	// round, so no pod is ever emptied at once.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	// +optional
	MaxPercentPerRound int32 `json:"maxPercentPerRound,omitempty"`
}

// Drain says how a pod sheds sockets when asked to: closes spread over
// SpreadSeconds, each preceded by a reconnect hint of up to JitterSeconds.
type Drain struct {
	// SpreadSeconds: a shed's closes are spread over this long; it is also
	// the length of one rebalance round.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	SpreadSeconds int32 `json:"spreadSeconds,omitempty"`
	// JitterSeconds bounds the reconnect hint (after_ms) each shed socket
	// gets; the next round waits for it so reconnects land first.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=600
	// +optional
	JitterSeconds int32 `json:"jitterSeconds,omitempty"`
}

// SecretKeyRef names one key of a Secret in the scaler's namespace.
type SecretKeyRef struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:default=token
	// +optional
	Key string `json:"key,omitempty"`
}

// WSEdgeScalerSpec is what the user asks for.
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must not exceed maxReplicas"
type WSEdgeScalerSpec struct {
	ScaleTargetRef ScaleTargetRef `json:"scaleTargetRef"`
	// MinReplicas is the fewest pods, whatever the load.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`
	// MaxReplicas is the most pods, whatever the load.
	// +kubebuilder:validation:Minimum=1
	MaxReplicas int32 `json:"maxReplicas"`
	// TargetConnectionsPerPod: replicas = ceil(total connections / target).
	// +kubebuilder:validation:Minimum=1
	TargetConnectionsPerPod int32 `json:"targetConnectionsPerPod"`
	// TargetMemoryBytesPerPod (optional): when pods report resident memory,
	// replicas are also at least ceil(total memory / target).
	// +kubebuilder:validation:Minimum=1
	// +optional
	TargetMemoryBytesPerPod *int64 `json:"targetMemoryBytesPerPod,omitempty"`
	// ScaleUp limits (defaults: no window, 4 pods per 60 s).
	// +kubebuilder:default={stabilizationWindowSeconds:0,maxPods:4,periodSeconds:60}
	// +optional
	ScaleUp *ScalingRules `json:"scaleUp,omitempty"`
	// ScaleDown limits (defaults: 300 s window, 1 pod per 300 s).
	// +kubebuilder:default={stabilizationWindowSeconds:300,maxPods:1,periodSeconds:300}
	// +optional
	ScaleDown *ScalingRules `json:"scaleDown,omitempty"`
	// +kubebuilder:default={}
	// +optional
	Rebalance Rebalance `json:"rebalance,omitempty"`
	// +kubebuilder:default={}
	// +optional
	Drain Drain `json:"drain,omitempty"`
	// AdminPort is the pods' admin listener (status and shed endpoints).
	// +kubebuilder:default=9090
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	AdminPort int32 `json:"adminPort,omitempty"`
	// AdminTokenSecretRef: the bearer token the pods' admin endpoints want.
	// Without it requests carry no token (pods then refuse them unless their
	// admin API is open).
	// +optional
	AdminTokenSecretRef *SecretKeyRef `json:"adminTokenSecretRef,omitempty"`
	// SyncPeriodSeconds: how often the pods are read.
	// +kubebuilder:default=15
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	SyncPeriodSeconds int32 `json:"syncPeriodSeconds,omitempty"`
}

// PodLoad is one pod as last read.
type PodLoad struct {
	Name string `json:"name"`
	// Connections the pod reported (for an unreadable pod: the load it was
	// assumed to carry, see Readable).
	Connections int64 `json:"connections"`
	// Readable is false when the status endpoint did not answer; such a pod
	// counts as full, never as empty.
	Readable bool `json:"readable"`
	// +optional
	Draining bool `json:"draining,omitempty"`
}

// WSEdgeScalerStatus is what the operator last saw and did.
type WSEdgeScalerStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	CurrentReplicas int32 `json:"currentReplicas"`
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`
	// +optional
	TotalConnections int64 `json:"totalConnections"`
	// +optional
	// +listType=map
	// +listMapKey=name
	Pods []PodLoad `json:"pods,omitempty"`
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
	// +optional
	LastScaleReason string `json:"lastScaleReason,omitempty"`
	// +optional
	LastRebalanceTime *metav1.Time `json:"lastRebalanceTime,omitempty"`
	// +optional
	LastRebalanceReason string `json:"lastRebalanceReason,omitempty"`
	// SocketsShed counts the sockets the operator asked pods to shed.
	// +optional
	SocketsShed int64 `json:"socketsShed,omitempty"`
	// Conditions: Ready, Scaling, Rebalancing, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// WSEdgeScaler scales a wsedge Deployment by connections per pod, removes the
// emptiest pods first and rebalances sockets after a scale-up.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=wss
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.scaleTargetRef.name`
// +kubebuilder:printcolumn:name="Min",type=integer,JSONPath=`.spec.minReplicas`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.maxReplicas`
// +kubebuilder:printcolumn:name="Per-Pod",type=integer,JSONPath=`.spec.targetConnectionsPerPod`
// +kubebuilder:printcolumn:name="Current",type=integer,JSONPath=`.status.currentReplicas`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desiredReplicas`
// +kubebuilder:printcolumn:name="Connections",type=integer,JSONPath=`.status.totalConnections`
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WSEdgeScaler struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WSEdgeScalerSpec   `json:"spec"`
	Status WSEdgeScalerStatus `json:"status,omitempty"`
}

// WSEdgeScalerList is a list of WSEdgeScalers.
// +kubebuilder:object:root=true
type WSEdgeScalerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WSEdgeScaler `json:"items"`
}
