package service

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
)

// MaxMessage bounds a status message KEDA receives (and shows on the
// ScaledJob, where the team that owns it reads it).
const MaxMessage = 1024

// SanitizeErrors returns server interceptors that pass every error's
// status message through the secrets set and cut it to MaxMessage. The
// messages are built from sanitized parts already; this is the last line,
// for a text nobody thought of.
func SanitizeErrors(set *secrets.Set) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	clean := func(err error) error {
		if err == nil {
			return nil
		}
		st := status.Convert(err)
		return status.Error(st.Code(), secrets.Truncate(set.Redact(st.Message()), MaxMessage))
	}
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		return resp, clean(err)
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return clean(handler(srv, ss))
	}
	return unary, stream
}
