package agent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's Prometheus metrics, in a registry of its own so
// several agents can live in one process (tests).
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	blobsStored prometheus.Counter
	queue       prometheus.Gauge
	flushes     *prometheus.CounterVec
	flushErrors *prometheus.CounterVec
	retries     prometheus.Gauge
	drops       *prometheus.CounterVec
	lastError   *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ckpt_agent_requests_total", Help: "Group API requests by method and HTTP status.",
		}, []string{"method", "code"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ckpt_agent_received_bytes_total", Help: "Blob and fragment bytes received.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ckpt_agent_sent_bytes_total", Help: "Blob and fragment bytes served.",
		}),
		blobsStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ckpt_agent_blobs_stored_total", Help: "Blobs and fragments stored.",
		}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ckpt_agent_flush_queue_length", Help: "Jobs queued in memory to move checkpoints up the levels or drop their copies (at most limits.max_queue; more wait on disk).",
		}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ckpt_agent_flushes_total", Help: "Checkpoints completed at a level by this agent's flusher.",
		}, []string{"level"}),
		flushErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ckpt_agent_flush_errors_total", Help: "Flushes to a level that failed.",
		}, []string{"level"}),
		retries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ckpt_agent_flush_retries_scheduled", Help: "Checkpoints waiting (backing off) to try a failed level again.",
		}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ckpt_agent_drops_total", Help: "Copies at a level removed because the origin removed the checkpoint or by the level's keep.",
		}, []string{"level"}),
		lastError: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ckpt_agent_flush_last_error", Help: "Unix time of the last failed flush to a level, with its error; absent once the level succeeds again.",
		}, []string{"level", "error"}),
	}
	m.reg.MustRegister(m.requests, m.bytesIn, m.bytesOut, m.blobsStored, m.queue, m.flushes, m.flushErrors, m.retries, m.drops, m.lastError,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// levelFailed shows err as the level's last error (one series per level).
func (m *metrics) levelFailed(level string, err error, at time.Time) {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	m.lastError.DeletePartialMatch(prometheus.Labels{"level": level})
	m.lastError.WithLabelValues(level, msg).Set(float64(at.Unix()))
}

func (m *metrics) levelOK(level string) {
	m.lastError.DeletePartialMatch(prometheus.Labels{"level": level})
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
