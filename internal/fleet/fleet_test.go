package fleet_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mageflow/mageflow/internal/fleet"
)

// eventBridge builds an EventBridge lifecycle event shaped like the examples
// in the EC2 Auto Scaling user guide ("Amazon EventBridge event patterns" and
// the warm pool lifecycle hook page); hand-written, not recorded.
func eventBridge(detailType, transition, origin, destination string) []byte {
	return fmt.Appendf(nil, `{
  "version": "0",
  "id": "468fb2a5-b0e9-4f3c-a36e-6c3b2b0d5e3a",
  "detail-type": %q,
  "source": "aws.autoscaling",
  "account": "123456789012",
  "time": "2026-11-03T10:15:02Z",
  "region": "eu-west-1",
  "resources": ["arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:042cba90-ad2f-431c-9b4d-6d9055bcc9fb:autoScalingGroupName/web"],
  "detail": {
    "LifecycleActionToken": "71514b9d-6a40-4b26-8523-05e7eEXAMPLE",
    "AutoScalingGroupName": "web",
    "LifecycleHookName": "mageflow-hook",
    "EC2InstanceId": "i-0b3ca5e3fEXAMPLE",
    "LifecycleTransition": %q,
    "NotificationMetadata": "env=production",
    "Origin": %q,
    "Destination": %q
  }
}`, detailType, transition, origin, destination)
}

func TestParseLifecycleEventFourCases(t *testing.T) {
	cases := []struct {
		name                             string
		body                             []byte
		wantEnters, wantWarm, wantLeaves bool
		wantWait                         fleet.LifecycleState
	}{
		{"cold launch", eventBridge(fleet.DetailTypeLaunch, fleet.TransitionLaunching, "EC2", "AutoScalingGroup"),
			true, false, false, fleet.StatePendingWait},
		{"into warm pool", eventBridge(fleet.DetailTypeLaunch, fleet.TransitionLaunching, "EC2", "WarmPool"),
			false, true, false, fleet.StateWarmedPendingWait},
		{"out of warm pool", eventBridge(fleet.DetailTypeLaunch, fleet.TransitionLaunching, "WarmPool", "AutoScalingGroup"),
			true, false, false, fleet.StatePendingWait},
		{"scale-in", eventBridge(fleet.DetailTypeTerminate, fleet.TransitionTerminating, "AutoScalingGroup", "EC2"),
			false, false, true, fleet.StateTerminatingWait},
		{"scale-in back to the pool", eventBridge(fleet.DetailTypeTerminate, fleet.TransitionTerminating, "AutoScalingGroup", "WarmPool"),
			false, false, true, fleet.StateTerminatingWait},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := fleet.ParseLifecycleEvent(c.body)
			if err != nil {
				t.Fatal(err)
			}
			if a.Group != "web" || a.Hook != "mageflow-hook" || a.InstanceID != "i-0b3ca5e3fEXAMPLE" ||
				a.Token != "71514b9d-6a40-4b26-8523-05e7eEXAMPLE" || a.Metadata != "env=production" {
				t.Errorf("fields = %+v", a)
			}
			if a.EntersService() != c.wantEnters || a.EntersWarmPool() != c.wantWarm || a.LeavesService() != c.wantLeaves {
				t.Errorf("enters=%v warm=%v leaves=%v, want %v %v %v",
					a.EntersService(), a.EntersWarmPool(), a.LeavesService(), c.wantEnters, c.wantWarm, c.wantLeaves)
			}
			if a.WaitState() != c.wantWait {
				t.Errorf("WaitState = %s, want %s", a.WaitState(), c.wantWait)
			}
		})
	}
}

func TestParseLifecycleEventKeyIsStablePerAction(t *testing.T) {
	a1, err := fleet.ParseLifecycleEvent(eventBridge(fleet.DetailTypeLaunch, fleet.TransitionLaunching, "EC2", "WarmPool"))
	if err != nil {
		t.Fatal(err)
	}
	redelivered, _ := fleet.ParseLifecycleEvent(eventBridge(fleet.DetailTypeLaunch, fleet.TransitionLaunching, "EC2", "WarmPool"))
	if a1.Key() != redelivered.Key() {
		t.Errorf("redelivery changed the key: %s vs %s", a1.Key(), redelivered.Key())
	}
	later := *a1
	later.Token = "another-token"
	if later.Key() == a1.Key() {
		t.Error("a new action on the same instance must get a new key")
	}
}

func TestParseLifecycleEventDirectNotification(t *testing.T) {
	// A hook whose notification target is an SQS queue sends the detail
	// object without the EventBridge envelope, and older ones no Origin.
	body := []byte(`{"Origin":"","Destination":"","LifecycleHookName":"h","AccountId":"123456789012",
		"RequestId":"4e0b","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING",
		"AutoScalingGroupName":"web","Service":"AWS Auto Scaling","Time":"2026-11-03T10:15:02.141Z",
		"EC2InstanceId":"i-1","LifecycleActionToken":"tok"}`)
	a, err := fleet.ParseLifecycleEvent(body)
	if err != nil {
		t.Fatal(err)
	}
	if a.Origin != fleet.PlaceGroup || a.Destination != fleet.PlaceEC2 || !a.LeavesService() {
		t.Errorf("defaults for a terminate without origin: %+v", a)
	}

	test := []byte(`{"AccountId":"123456789012","RequestId":"4e0b","AutoScalingGroupARN":"arn:…",
		"AutoScalingGroupName":"web","Service":"AWS Auto Scaling","Event":"autoscaling:TEST_NOTIFICATION",
		"Time":"2026-11-03T10:15:02.141Z"}`)
	if _, err := fleet.ParseLifecycleEvent(test); !errors.Is(err, fleet.ErrNotLifecycleAction) {
		t.Errorf("test notification: err = %v, want ErrNotLifecycleAction", err)
	}
}

func TestParseLifecycleEventRejects(t *testing.T) {
	cases := map[string]struct {
		body     string
		dropOnly bool // ErrNotLifecycleAction: acknowledge and drop
	}{
		"not json":                {`{"detail-type":`, false},
		"other event":             {`{"detail-type":"EC2 Instance Launch Successful","source":"aws.autoscaling","detail":{}}`, true},
		"envelope without detail": {`{"detail-type":"EC2 Instance-launch Lifecycle Action","source":"aws.autoscaling"}`, false},
		"mismatched transition":   {string(eventBridge(fleet.DetailTypeLaunch, fleet.TransitionTerminating, "AutoScalingGroup", "EC2")), false},
		"no token": {`{"detail-type":"EC2 Instance-launch Lifecycle Action","detail":{"AutoScalingGroupName":"web",
			"LifecycleHookName":"h","EC2InstanceId":"i-1","LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING"}}`, false},
		"no hook": {`{"detail-type":"EC2 Instance-launch Lifecycle Action","detail":{"AutoScalingGroupName":"web",
			"LifecycleActionToken":"t","EC2InstanceId":"i-1","LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING"}}`, false},
		"no transition": {`{"AutoScalingGroupName":"web","LifecycleHookName":"h","EC2InstanceId":"i-1","LifecycleActionToken":"t"}`, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			a, err := fleet.ParseLifecycleEvent([]byte(c.body))
			if err == nil {
				t.Fatalf("accepted: %+v", a)
			}
			if errors.Is(err, fleet.ErrNotLifecycleAction) != c.dropOnly {
				t.Errorf("err = %v; ErrNotLifecycleAction expected: %v", err, c.dropOnly)
			}
		})
	}
}

func TestErrorClassesAndText(t *testing.T) {
	cause := errors.New("api error Throttling: Rate exceeded")
	e := error(&fleet.Error{Op: "SetDesiredCapacity", Subject: "web", Code: "Throttling", Class: fleet.ErrRetryable, Err: cause})
	if !fleet.IsRetryable(e) || !errors.Is(e, cause) || errors.Is(e, fleet.ErrNoActiveAction) {
		t.Errorf("retryable error classes wrong: %v", e)
	}
	if !strings.Contains(e.Error(), "SetDesiredCapacity web") || !strings.Contains(e.Error(), "retry with backoff") {
		t.Errorf("text = %q", e)
	}
	p := error(&fleet.Error{Op: "PutWarmPool", Code: "AccessDenied", Hint: "grant it", Err: errors.New("denied")})
	if fleet.IsRetryable(p) || !strings.Contains(p.Error(), "permanent: grant it") {
		t.Errorf("permanent error: %q", p)
	}
}

func TestLifecycleStateHelpers(t *testing.T) {
	for s, want := range map[fleet.LifecycleState][2]bool{ // warm, leaving
		fleet.StateInService:         {false, false},
		fleet.StatePendingWait:       {false, false},
		fleet.StateWarmedPendingWait: {true, false},
		fleet.StateWarmedStopped:     {true, false},
		fleet.StateTerminatingWait:   {false, true},
		fleet.StateWarmedTerminating: {true, true},
		"Detaching":                  {false, true},
		fleet.StateTerminated:        {false, true},
	} {
		if got := [2]bool{s.Warm(), s.Leaving()}; got != want {
			t.Errorf("%s: warm, leaving = %v, want %v", s, got, want)
		}
	}
}
