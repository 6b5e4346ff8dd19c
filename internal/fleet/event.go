package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrNotLifecycleAction marks a well-formed message that carries no lifecycle
// action to complete: Auto Scaling's test notification sent when a hook is
// created, or another EventBridge event routed to the same queue. Consumers
// acknowledge and drop it.
var ErrNotLifecycleAction = errors.New("message is not a lifecycle action")

// EventBridge detail types of Auto Scaling lifecycle actions.
const (
	DetailTypeLaunch    = "EC2 Instance-launch Lifecycle Action"
	DetailTypeTerminate = "EC2 Instance-terminate Lifecycle Action"
)

// lifecycleDetail holds the fields common to an EventBridge event's "detail"
// and a hook's direct (SQS/SNS target) notification, which is the same object
// without the envelope.
type lifecycleDetail struct {
	Token       string `json:"LifecycleActionToken"`
	Group       string `json:"AutoScalingGroupName"`
	Hook        string `json:"LifecycleHookName"`
	InstanceID  string `json:"EC2InstanceId"`
	Transition  string `json:"LifecycleTransition"`
	Metadata    string `json:"NotificationMetadata"`
	Origin      string `json:"Origin"`
	Destination string `json:"Destination"`
	Event       string `json:"Event"` // "autoscaling:TEST_NOTIFICATION" on direct notifications
}

// eventEnvelope is an EventBridge event; a direct notification has no
// envelope, so its fields land in the embedded lifecycleDetail instead.
type eventEnvelope struct {
	DetailType string           `json:"detail-type"`
	Source     string           `json:"source"`
	Detail     *lifecycleDetail `json:"detail"`
	lifecycleDetail
}

// ParseLifecycleEvent decodes an Auto Scaling lifecycle action from an
// EventBridge event ("EC2 Instance-launch Lifecycle Action" or
// "EC2 Instance-terminate Lifecycle Action") or from a hook's direct SQS
// notification. It returns ErrNotLifecycleAction (wrapped) for messages that
// carry none, and a plain error for malformed ones.
//
// When Origin or Destination is absent (older groups without a warm pool),
// they are filled from the transition: a launch goes EC2→AutoScalingGroup, a
// termination AutoScalingGroup→EC2, so callers can always rely on them.
func ParseLifecycleEvent(body []byte) (*LifecycleAction, error) {
	var msg eventEnvelope
	if err := json.Unmarshal(body, &msg); err != nil {
		return nil, fmt.Errorf("fleet: lifecycle event is not JSON: %w", err)
	}
	d := &msg.lifecycleDetail
	if msg.DetailType != "" || msg.Detail != nil {
		if msg.DetailType != DetailTypeLaunch && msg.DetailType != DetailTypeTerminate {
			return nil, fmt.Errorf("fleet: EventBridge event %q from %q: %w", msg.DetailType, msg.Source, ErrNotLifecycleAction)
		}
		if msg.Detail == nil {
			return nil, fmt.Errorf("fleet: EventBridge %q event has no detail", msg.DetailType)
		}
		d = msg.Detail
	}
	if d.Event == "autoscaling:TEST_NOTIFICATION" {
		return nil, fmt.Errorf("fleet: Auto Scaling test notification for group %q: %w", d.Group, ErrNotLifecycleAction)
	}
	a := &LifecycleAction{
		Group:       d.Group,
		Hook:        d.Hook,
		Token:       d.Token,
		InstanceID:  d.InstanceID,
		Transition:  d.Transition,
		Origin:      d.Origin,
		Destination: d.Destination,
		Metadata:    d.Metadata,
	}
	switch a.Transition {
	case TransitionLaunching:
		if a.Origin == "" {
			a.Origin = PlaceEC2
		}
		if a.Destination == "" {
			a.Destination = PlaceGroup
		}
	case TransitionTerminating:
		if a.Origin == "" {
			a.Origin = PlaceGroup
		}
		if a.Destination == "" {
			a.Destination = PlaceEC2
		}
	case "":
		return nil, fmt.Errorf("fleet: lifecycle event has no LifecycleTransition")
	default:
		return nil, fmt.Errorf("fleet: lifecycle transition %q: %w", a.Transition, ErrNotLifecycleAction)
	}
	if msg.DetailType == DetailTypeLaunch && a.Transition != TransitionLaunching ||
		msg.DetailType == DetailTypeTerminate && a.Transition != TransitionTerminating {
		return nil, fmt.Errorf("fleet: %q event carries transition %q", msg.DetailType, a.Transition)
	}
	if a.InstanceID == "" || a.Token == "" {
		return nil, fmt.Errorf("fleet: lifecycle event for group %q lacks EC2InstanceId or LifecycleActionToken", a.Group)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}
