package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/workflows"
)

// scheduleID prefixes every schedule mageflow owns, so apply never touches
// schedules it did not create.
func scheduleID(name string) string { return "mageflow-" + name }

// errScheduleUsage names the two subcommands.
var errScheduleUsage = errors.New("use `mageflow schedule apply` (create or update the schedules in the config) or `mageflow schedule list`")

// runSchedule is `mageflow schedule apply|list`.
func runSchedule(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintln(stderr, errScheduleUsage)
		return nil
	}
	if len(args) == 0 || (args[0] != "apply" && args[0] != "list") {
		return usageError{errScheduleUsage}
	}
	verb := args[0]
	e := newFlags("schedule "+verb, stderr)
	if err := e.parse(args[1:]); err != nil {
		return err
	}
	c, cfg, err := e.client(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	if verb == "list" {
		return listSchedules(ctx, c, stdout)
	}
	names := make([]string, 0, len(cfg.Schedules))
	for n := range cfg.Schedules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		created, err := applySchedule(ctx, c, cfg, n, cfg.Schedules[n])
		if err != nil {
			return fmt.Errorf("schedule %s: %w", n, err)
		}
		state := "updated"
		if created {
			state = "created"
		}
		fmt.Fprintf(stdout, "%s %s\n", state, scheduleID(n))
	}
	if len(names) == 0 {
		fmt.Fprintln(stdout, "no schedules in the config (add a schedules: section, see docs/configuration.md)")
	}
	return nil
}

func scheduleAction(cfg *config.Config, s *config.Schedule, name string) (*client.ScheduleWorkflowAction, error) {
	switch s.Action {
	case "refresh":
		return &client.ScheduleWorkflowAction{
			ID: workflows.RefreshWorkflowID(s.Group), Workflow: workflows.WarmPoolImageRefresh, TaskQueue: cfg.Temporal.TaskQueue,
			Args: []any{workflows.RefreshInput{Group: s.Group, ImageID: s.Image, Batch: s.Batch}},
		}, nil
	case "harden":
		// ScheduledHarden runs the hardening under harden/<host>, so a
		// scheduled run never overlaps one a person started.
		in := workflows.HardenInput{Host: s.Host, App: s.App, Environment: environmentOf(cfg, s.App, s.Host), Apply: s.Apply, RequestedBy: "schedule:" + name}
		return &client.ScheduleWorkflowAction{
			ID: "scheduled-harden/" + s.Host + "/" + name, Workflow: workflows.ScheduledHarden, TaskQueue: cfg.Temporal.TaskQueue, Args: []any{in},
		}, nil
	case "build":
		app := cfg.Apps[s.App]
		env, _ := app.EnvironmentForBranch(s.Ref)
		in := workflows.ScheduledBuildInput{App: s.App, Ref: s.Ref, BuildTimeout: app.Build.Timeout.Duration, Environment: env}
		if e := app.Environments[env]; e != nil && e.AutoDeploy {
			in.AutoDeploy = true
		}
		return &client.ScheduleWorkflowAction{
			ID: "scheduled-build/" + s.App + "/" + name, Workflow: workflows.ScheduledBuild, TaskQueue: cfg.Temporal.TaskQueue, Args: []any{in},
		}, nil
	}
	return nil, fmt.Errorf("action %q is not known", s.Action)
}

func scheduleSpec(s *config.Schedule) client.ScheduleSpec {
	if s.Cron != "" {
		return client.ScheduleSpec{CronExpressions: []string{s.Cron}}
	}
	return client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: s.Every.Duration}}}
}

// applySchedule creates the schedule or, when it exists, brings its spec,
// action and pause state in line with the config (idempotent).
func applySchedule(ctx context.Context, c client.Client, cfg *config.Config, name string, s *config.Schedule) (bool, error) {
	action, err := scheduleAction(cfg, s, name)
	if err != nil {
		return false, err
	}
	_, err = c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID: scheduleID(name), Spec: scheduleSpec(s), Action: action, Paused: s.Paused,
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, CatchupWindow: time.Hour,
		Note: "managed by `mageflow schedule apply` from " + cfg.File,
	})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return false, err
	}
	h := c.ScheduleClient().GetHandle(ctx, scheduleID(name))
	err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
		sch := in.Description.Schedule
		spec := scheduleSpec(s)
		sch.Spec = &spec
		sch.Action = action
		if sch.Policy == nil {
			sch.Policy = &client.SchedulePolicies{}
		}
		sch.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
		if sch.State == nil {
			sch.State = &client.ScheduleState{}
		}
		sch.State.Paused = s.Paused
		return &client.ScheduleUpdate{Schedule: &sch}, nil
	}})
	return false, err
}

func listSchedules(ctx context.Context, c client.Client, stdout io.Writer) error {
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tSPEC\tWORKFLOW\tPAUSED\tNEXT RUN")
	n := 0
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return err
		}
		if !strings.HasPrefix(e.ID, "mageflow-") {
			continue
		}
		n++
		next := "-"
		if len(e.NextActionTimes) > 0 {
			next = e.NextActionTimes[0].UTC().Format(time.RFC3339)
		}
		spec := "-"
		if e.Spec != nil {
			if len(e.Spec.CronExpressions) > 0 {
				spec = strings.Join(e.Spec.CronExpressions, " | ")
			} else if len(e.Spec.Calendars) > 0 {
				spec = fmt.Sprintf("%d calendar(s)", len(e.Spec.Calendars))
			} else if len(e.Spec.Intervals) > 0 {
				spec = "every " + e.Spec.Intervals[0].Every.String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", e.ID, spec, e.WorkflowType.Name, e.Paused, next)
	}
	if n == 0 {
		fmt.Fprintln(tw, "(none: run mageflow schedule apply)")
	}
	return tw.Flush()
}
