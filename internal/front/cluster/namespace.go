package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mageflow/mageflow/internal/platform/searchattr"
)

// retention is how long closed workflows stay in a namespace it creates.
const retention = 7 * 24 * time.Hour

// waitHealthy dials the frontend until its health check passes.
func waitHealthy(ctx context.Context, addr string, timeout time.Duration, exited func() error) (client.Client, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if err := exited(); err != nil {
			return nil, err
		}
		c, err := client.Dial(client.Options{HostPort: addr, Namespace: "temporal-system", Logger: nopLogger{}})
		if err == nil {
			if _, err = c.CheckHealth(ctx, &client.CheckHealthRequest{}); err == nil {
				return c, nil
			}
			c.Close()
		}
		last = err
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the Temporal frontend %s is not healthy after %s: %v", addr, timeout, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// RegisterNamespace creates namespace ns (if missing) and mageflow's
// search attributes in it (those missing), then waits until both are
// visible. Idempotent.
func RegisterNamespace(ctx context.Context, c client.Client, ns string) error {
	_, err := c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(retention),
		Description: "registered by mageflow cluster",
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("register namespace %s: %w", ns, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing, err := missingAttributes(ctx, c, ns)
		if err == nil && len(missing) == 0 {
			return nil
		}
		if err == nil {
			_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: ns, SearchAttributes: missing})
			var already *serviceerror.AlreadyExists
			if errors.As(err, &already) {
				err = nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("search attributes of namespace %s: %v", ns, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// missingAttributes lists mageflow's search attributes ns lacks.
func missingAttributes(ctx context.Context, c client.Client, ns string) (map[string]enums.IndexedValueType, error) {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		return nil, err
	}
	missing := map[string]enums.IndexedValueType{}
	for _, d := range searchattr.All() {
		if _, ok := resp.GetCustomAttributes()[d.Name]; !ok {
			missing[d.Name] = d.Type
		}
	}
	return missing, nil
}

type nopLogger struct{}

func (nopLogger) Debug(string, ...any) {}
func (nopLogger) Info(string, ...any)  {}
func (nopLogger) Warn(string, ...any)  {}
func (nopLogger) Error(string, ...any) {}
