package app

import (
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/metrics"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/placeholders"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/pools"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/service"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/sweeper"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/trigger"
)

// Each package declares what it needs of the others as a small interface
// of its own; app is where the parts meet, so the compiler checks here that
// they fit, instead of a type assertion failing (or silently doing
// nothing) at run time.
var (
	_ pools.Source        = (*azdo.Client)(nil)
	_ sweeper.Source      = (*azdo.Client)(nil)
	_ placeholders.Source = (*azdo.Client)(nil)

	_ azdo.Observer         = (*metrics.Metrics)(nil)
	_ pools.Observer        = (*metrics.Metrics)(nil)
	_ routing.Observer      = (*metrics.Metrics)(nil)
	_ sweeper.Observer      = (*metrics.Metrics)(nil)
	_ placeholders.Observer = (*metrics.Metrics)(nil)

	_ trigger.Organizations = (*config.File)(nil)
	_ service.Access        = (*config.File)(nil)
)
