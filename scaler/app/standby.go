package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/standby"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/status"
)

// StandbyAnswer is what /api/v1/standby answers a pod.
type StandbyAnswer struct {
	Stay bool   `json:"stay"`
	Why  string `json:"why"`
}

// serveStandby serves /api/v1/standby on --standby-addr (--read-cluster
// only: the answer needs the ScaledJob's pods). It has a port of its own so
// that a NetworkPolicy can open it to agent pods without opening the
// status page. It answers a question and changes nothing, so a caller
// that lies about its name learns whether another pod would stay and how
// many standby agents its ScaledJob keeps, and nothing else. It stops with
// the other servers (stopWhenDone).
func (inst *Instance) serveStandby(flags *config.Flags, log logrus.FieldLogger) error {
	if !flags.ReadCluster || flags.StandbyAddr == "" {
		return nil
	}
	l, err := net.Listen("tcp", flags.StandbyAddr)
	if err != nil {
		return fmt.Errorf("--standby-addr: %w", err)
	}
	inst.StandbyAddr = l.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/standby", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		stay, why := inst.standbyAnswer(r.Context(), q.Get("namespace"), q.Get("pod"))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(StandbyAnswer{Stay: stay, Why: inst.secrets.Redact(why)})
	})
	inst.standby = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := inst.standby.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("standby server stopped")
		}
	}()
	return nil
}

// standbyAnswer finds the pod's ScaledJob among the pods the cluster reader
// knows, and asks the service whether the pod stays.
func (inst *Instance) standbyAnswer(ctx context.Context, namespace, pod string) (bool, string) {
	scaledJob, mine := standbyCandidates(inst.cluster.Pods(), namespace, pod)
	if scaledJob == "" {
		return false, fmt.Sprintf("no pod %s/%s of a ScaledJob is known", namespace, pod)
	}
	return inst.service.StandbyPod(ctx, namespace+"/"+scaledJob, pod, mine)
}

// standbyCandidates returns the ScaledJob of the pod that asks, and that
// ScaledJob's pods that may stay as standby agents: not gone, and able to
// start. A pod that cannot start (unschedulable, image pull errors) is not
// ready and never will be, so it does not take the place of one that is.
func standbyCandidates(all []scaledjobs.Pod, namespace, pod string) (string, []standby.Pod) {
	scaledJob := ""
	for _, p := range all {
		if p.Namespace == namespace && p.Name == pod && !p.Gone {
			scaledJob = p.ScaledJob
		}
	}
	if scaledJob == "" {
		return "", nil
	}
	var mine []standby.Pod
	for _, p := range all {
		if p.Namespace == namespace && p.ScaledJob == scaledJob && !p.Gone && (p.Problem == "" || p.Name == pod) {
			mine = append(mine, standby.Pod{Name: p.Name, Created: p.Created})
		}
	}
	return scaledJob, mine
}

// rebuildDemand rebuilds the standby history of new auto triggers from
// their pools' finished jobs, at start and every minute after (a trigger
// appears when its ScaledJob does; a failed read is tried again). Each
// failure is logged once until a rebuild works.
func (inst *Instance) rebuildDemand(ctx context.Context, log logrus.FieldLogger) {
	last := ""
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		err := inst.service.RebuildDemand(ctx)
		switch {
		case err != nil && err.Error() != last:
			log.WithError(err).Warn("standby: auto forecasts from live demand only until the history can be read")
			last = err.Error()
		case err == nil:
			last = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// standbyView is a trigger's standby for the status page.
func (inst *Instance) standbyView(trigger string) (status.StandbyView, bool) {
	st, ok := inst.demand.Standby(trigger)
	return status.StandbyView{Wanted: st.Wanted, Why: st.Why, Ready: st.Ready, Used: st.Used}, ok
}
