package app

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/metrics"
)

func startSweeper(ctx context.Context, flags *config.Flags, inst *Instance, m *metrics.Metrics, log *logrus.Logger) error {
	return nil
}
