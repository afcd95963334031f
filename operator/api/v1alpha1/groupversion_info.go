// Package v1alpha1 holds the WSEdgeScaler API (group wsedge.io).
// +kubebuilder:object:generate=true
// +groupName=wsedge.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "wsedge.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package into a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
