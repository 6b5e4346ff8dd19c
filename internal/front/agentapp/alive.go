package agentapp

import (
	"context"
	"time"

	"github.com/mageflow/mageflow/activities/agent"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
)

// AliveEvery is how often an agent's activities prove they still run.
const AliveEvery = 5 * time.Second

// WorkerOptions are the worker options of a host agent. Every host
// activity heartbeats while it runs, so when an agent is killed (SIGKILL,
// host reboot) its step is retried within the workflow's heartbeat timeout
// (15 s) instead of waiting out a start-to-close timeout of minutes.
func WorkerOptions() worker.Options {
	return worker.Options{Interceptors: []interceptor.WorkerInterceptor{&aliveInterceptor{}}}
}

type aliveInterceptor struct {
	interceptor.WorkerInterceptorBase
}

func (*aliveInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &aliveActivity{}
	i.Next = next
	return i
}

type aliveActivity struct {
	interceptor.ActivityInboundInterceptorBase
}

// ExecuteActivity heartbeats (without details, so an activity's own
// progress details are not needed to resume) until the activity returns.
func (a *aliveActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	stop := agent.KeepAlive(ctx, AliveEvery)
	defer stop()
	return a.Next.ExecuteActivity(ctx, in)
}
