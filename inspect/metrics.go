package inspect

import (
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector exports Counters to Prometheus. The set of counters follows
// netstack's Stats and the stack's NICs, so it is not described up front
// (an unchecked collector).
type collector struct{ t *Target }

func (collector) Describe(chan<- *prometheus.Desc) {}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, ctr := range Counters(c.t) {
		keys := make([]string, 0, len(ctr.Labels))
		for k := range ctr.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		values := make([]string, len(keys))
		for i, k := range keys {
			values[i] = ctr.Labels[k]
		}
		typ := prometheus.CounterValue
		if ctr.Gauge {
			typ = prometheus.GaugeValue
		}
		desc := prometheus.NewDesc(ctr.Metric, "netstack counter "+ctr.Source, keys, prometheus.Labels{"stack": c.t.Name})
		m, err := prometheus.NewConstMetric(desc, typ, float64(ctr.Value), values...)
		if err != nil {
			m = prometheus.NewInvalidMetric(desc, err)
		}
		ch <- m
	}
}

// MetricsHandler serves t's counters in Prometheus' text format.
func MetricsHandler(t *Target) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{t})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
