// Package kedarules checks the scaler's copies of KEDA's rules against
// KEDA's own code, at the version the project pins.
package kedarules

import (
	"fmt"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
)

// scaledjobs.ScaledJob.Room is KEDA's ScaledJob.MaxReplicaCount() for
// every combination of unset, zero, equal, smaller and larger counts.
func TestRoomIsKEDAsMaxReplicaCount(t *testing.T) {
	values := []*int32{nil, ptr[int32](0), ptr[int32](1), ptr[int32](3), ptr[int32](10)}
	for _, minN := range values {
		for _, maxN := range values {
			var k kedav1alpha1.ScaledJob
			k.Spec.MinReplicaCount, k.Spec.MaxReplicaCount = minN, maxN
			s := scaledjobs.ScaledJob{MinReplicaCount: widen(minN), MaxReplicaCount: widen(maxN)}
			if got, want := s.Room(), k.MaxReplicaCount(); got != want {
				t.Errorf("min %s max %s: Room %d, KEDA %d", show(minN), show(maxN), got, want)
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

func widen(v *int32) *int64 {
	if v == nil {
		return nil
	}
	w := int64(*v)
	return &w
}

func show(v *int32) string {
	if v == nil {
		return "unset"
	}
	return fmt.Sprint(*v)
}
