// Package v1alpha1 holds the WSEdgeScaler API (group wsedge.io). It depends
// on k8s.io/apimachinery only, so that anything can import it cheaply.
// +kubebuilder:object:generate=true
// +groupName=wsedge.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the group and version of this API.
var GroupVersion = schema.GroupVersion{Group: "wsedge.io", Version: "v1alpha1"}

// AddToScheme adds the types of this package to a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &WSEdgeScaler{}, &WSEdgeScalerList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
