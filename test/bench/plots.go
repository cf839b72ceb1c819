package main

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotRequests draws Azure DevOps requests per minute against S, one line
// per configuration.
func (r *report) plotRequests(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Azure DevOps job-requests calls per minute, %d pools", loadPools)
	p.X.Label.Text = "ScaledJobs (S)"
	p.Y.Label.Text = "requests / minute"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	var args []any
	for i, side := range r.loads[0].sides {
		var xy plotter.XYs
		for _, l := range r.loads {
			xy = append(xy, plotter.XY{X: float64(l.s), Y: max(l.sides[i].req, 1)})
		}
		args = append(args, side.label, xy)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return err
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}

// plotLatency draws the cumulative distribution of queue-to-metric
// latency, one line per configuration.
func plotLatency(l *latencyWorkload, path string) error {
	p := plot.New()
	p.Title.Text = "Queue-to-metric latency, " + l.title
	p.X.Label.Text = "simulated seconds from queued to counted (KEDA polls every 5 s)"
	p.Y.Label.Text = "fraction of jobs"
	p.Legend.Top, p.Legend.Left = false, false
	p.Y.Min, p.Y.Max = 0, 1
	var args []any
	for _, s := range l.sides {
		var xy plotter.XYs
		for i, d := range s.sim {
			xy = append(xy, plotter.XY{X: d.Seconds(), Y: float64(i+1) / float64(len(s.sim))})
		}
		args = append(args, s.label, xy)
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return err
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
