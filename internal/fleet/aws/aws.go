// Package aws implements fleet.Provider on EC2 Auto Scaling and EC2 with
// aws-sdk-go-v2.
//
// Each method maps to one or a few API calls (named in its doc) so that IAM
// policies can be written from this file: the role needs
// autoscaling:DescribeAutoScalingGroups, DescribeWarmPool, SetDesiredCapacity,
// TerminateInstanceInAutoScalingGroup, UpdateAutoScalingGroup, PutWarmPool,
// CompleteLifecycleAction, RecordLifecycleActionHeartbeat, and
// ec2:DescribeInstances, DescribeImages, CreateImage,
// DescribeLaunchTemplateVersions, CreateLaunchTemplateVersion (plus
// iam:PassRole if the launch template carries an instance profile).
//
// Errors are *fleet.Error values classified by AWS error code: the SDK's
// retryer absorbs short throttling and 5xx bursts first, and what remains is
// marked fleet.ErrRetryable (throttling, ScalingActivityInProgress,
// ResourceContention, InstanceRefreshInProgress, transport failures),
// fleet.ErrNoActiveAction ("No active Lifecycle Action found"),
// fleet.ErrNotFound, or left permanent.
package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/mageflow/mageflow/internal/fleet"
)

// Config selects the region and, optionally, endpoints and retry budget.
type Config struct {
	// Region is required unless the default chain (AWS_REGION, shared
	// config) provides one.
	Region string
	// Endpoint overrides the Auto Scaling endpoint: a VPC interface endpoint,
	// or a test server.
	Endpoint string
	// EC2Endpoint overrides the EC2 endpoint; empty means Endpoint (a test
	// server that speaks both protocols) or the regional default.
	EC2Endpoint string
	// Credentials overrides the default credential chain (environment,
	// shared files, instance role).
	Credentials awssdk.CredentialsProvider
	// MaxAttempts is the SDK's attempts per call, first one included, for
	// throttling and 5xx answers; 0 keeps the SDK default (3).
	MaxAttempts int
	// MaxBackoff caps the SDK's delay between attempts; 0 keeps the SDK
	// default (20 s).
	MaxBackoff time.Duration
}

// Provider is the AWS fleet.Provider.
type Provider struct {
	as     *autoscaling.Client
	ec2    *ec2.Client
	region string
}

var _ fleet.Provider = (*Provider)(nil)

// New builds a Provider from cfg and the SDK's default configuration chain.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() awssdk.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				if cfg.MaxAttempts > 0 {
					o.MaxAttempts = cfg.MaxAttempts
				}
				if cfg.MaxBackoff > 0 {
					o.MaxBackoff = cfg.MaxBackoff
				}
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("fleet/aws: load AWS configuration: %w (check AWS_PROFILE and ~/.aws/config)", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("fleet/aws: no AWS region: set the fleet's region in mageflow's config or AWS_REGION")
	}
	ec2Endpoint := cfg.EC2Endpoint
	if ec2Endpoint == "" {
		ec2Endpoint = cfg.Endpoint
	}
	return &Provider{
		as: autoscaling.NewFromConfig(awsCfg, func(o *autoscaling.Options) {
			if cfg.Endpoint != "" {
				o.BaseEndpoint = awssdk.String(cfg.Endpoint)
			}
		}),
		ec2: ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
			if ec2Endpoint != "" {
				o.BaseEndpoint = awssdk.String(ec2Endpoint)
			}
		}),
		region: awsCfg.Region,
	}, nil
}

// Describe calls DescribeAutoScalingGroups, then DescribeWarmPool if the
// group has a pool, DescribeLaunchTemplateVersions to resolve "$Latest" or
// "$Default" to a number and its image, and DescribeInstances for private
// IPs and the images instances actually run.
func (p *Provider) Describe(ctx context.Context, group string) (*fleet.Group, error) {
	asg, err := p.group(ctx, group)
	if err != nil {
		return nil, err
	}
	g := &fleet.Group{
		Name:    group,
		Desired: int(awssdk.ToInt32(asg.DesiredCapacity)),
		Min:     int(awssdk.ToInt32(asg.MinSize)),
		Max:     int(awssdk.ToInt32(asg.MaxSize)),
	}
	for _, in := range asg.Instances {
		g.Instances = append(g.Instances, instance(in, false))
	}
	if asg.WarmPoolConfiguration != nil {
		if g.WarmPool, err = p.warmPool(ctx, group); err != nil {
			return nil, err
		}
	}
	if spec := templateSpec(asg); spec != nil {
		if g.LaunchTemplate, err = p.resolveTemplate(ctx, spec); err != nil {
			return nil, err
		}
	}
	if err := p.addEC2Details(ctx, g); err != nil {
		return nil, err
	}
	return g, nil
}

// group fetches one Auto Scaling group.
func (p *Provider) group(ctx context.Context, group string) (*astypes.AutoScalingGroup, error) {
	out, err := p.as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{group},
	})
	if err != nil {
		return nil, classify("DescribeAutoScalingGroups", group, err)
	}
	for i := range out.AutoScalingGroups {
		if awssdk.ToString(out.AutoScalingGroups[i].AutoScalingGroupName) == group {
			return &out.AutoScalingGroups[i], nil
		}
	}
	return nil, &fleet.Error{
		Op: "DescribeAutoScalingGroups", Subject: group, Code: "NotFound", Class: fleet.ErrNotFound,
		Err: fmt.Errorf("no Auto Scaling group named %q in %s; check the group name and region in mageflow's config", group, p.region),
	}
}

func (p *Provider) warmPool(ctx context.Context, group string) (*fleet.WarmPool, error) {
	wp := &fleet.WarmPool{}
	in := &autoscaling.DescribeWarmPoolInput{AutoScalingGroupName: awssdk.String(group)}
	for {
		out, err := p.as.DescribeWarmPool(ctx, in)
		if err != nil {
			return nil, classify("DescribeWarmPool", group, err)
		}
		if c := out.WarmPoolConfiguration; c != nil {
			wp.MinSize = int(awssdk.ToInt32(c.MinSize))
			if m := awssdk.ToInt32(c.MaxGroupPreparedCapacity); m > 0 {
				wp.MaxPreparedCapacity = int(m)
			}
			wp.State = fleet.PoolState(c.PoolState)
			if wp.State == "" {
				wp.State = fleet.PoolStopped
			}
			wp.Status = string(c.Status)
			if c.InstanceReusePolicy != nil {
				wp.ReuseOnScaleIn = awssdk.ToBool(c.InstanceReusePolicy.ReuseOnScaleIn)
			}
		}
		for _, i := range out.Instances {
			wp.Instances = append(wp.Instances, instance(i, true))
		}
		if awssdk.ToString(out.NextToken) == "" {
			return wp, nil
		}
		in.NextToken = out.NextToken
	}
}

func instance(in astypes.Instance, warm bool) fleet.Instance {
	out := fleet.Instance{
		ID:                   awssdk.ToString(in.InstanceId),
		LifecycleState:       fleet.LifecycleState(in.LifecycleState),
		HealthStatus:         awssdk.ToString(in.HealthStatus),
		ImageID:              awssdk.ToString(in.ImageId),
		ProtectedFromScaleIn: awssdk.ToBool(in.ProtectedFromScaleIn),
		InWarmPool:           warm || fleet.LifecycleState(in.LifecycleState).Warm(),
	}
	if in.LaunchTemplate != nil {
		out.LaunchTemplateVersion = awssdk.ToString(in.LaunchTemplate.Version)
	}
	return out
}

// templateSpec returns the group's launch template, whether set directly or
// through a mixed instances policy; nil for launch configurations.
func templateSpec(g *astypes.AutoScalingGroup) *astypes.LaunchTemplateSpecification {
	if g.LaunchTemplate != nil {
		return g.LaunchTemplate
	}
	if m := g.MixedInstancesPolicy; m != nil && m.LaunchTemplate != nil {
		return m.LaunchTemplate.LaunchTemplateSpecification
	}
	return nil
}

// resolveTemplate turns a template reference with a possibly symbolic
// version into a numbered one with its image. Numbers matter for rollback:
// "$Latest" would follow the version just published.
func (p *Provider) resolveTemplate(ctx context.Context, spec *astypes.LaunchTemplateSpecification) (fleet.LaunchTemplateRef, error) {
	version := awssdk.ToString(spec.Version)
	if version == "" {
		version = "$Default" // what Auto Scaling launches when no version is set
	}
	in := &ec2.DescribeLaunchTemplateVersionsInput{Versions: []string{version}}
	subject := awssdk.ToString(spec.LaunchTemplateName)
	if id := awssdk.ToString(spec.LaunchTemplateId); id != "" {
		in.LaunchTemplateId = awssdk.String(id)
		subject = id
	} else {
		in.LaunchTemplateName = spec.LaunchTemplateName
	}
	out, err := p.ec2.DescribeLaunchTemplateVersions(ctx, in)
	if err != nil {
		return fleet.LaunchTemplateRef{}, classify("DescribeLaunchTemplateVersions", subject, err)
	}
	if len(out.LaunchTemplateVersions) == 0 {
		return fleet.LaunchTemplateRef{}, &fleet.Error{
			Op: "DescribeLaunchTemplateVersions", Subject: subject, Code: "NotFound", Class: fleet.ErrNotFound,
			Err: fmt.Errorf("launch template %s has no version %s", subject, version),
		}
	}
	return templateRef(out.LaunchTemplateVersions[0]), nil
}

func templateRef(v ec2types.LaunchTemplateVersion) fleet.LaunchTemplateRef {
	ref := fleet.LaunchTemplateRef{
		ID:      awssdk.ToString(v.LaunchTemplateId),
		Name:    awssdk.ToString(v.LaunchTemplateName),
		Version: strconv.FormatInt(awssdk.ToInt64(v.VersionNumber), 10),
	}
	if v.LaunchTemplateData != nil {
		ref.ImageID = awssdk.ToString(v.LaunchTemplateData.ImageId)
	}
	return ref
}

// ec2FilterChunk bounds the values of one DescribeInstances filter.
const ec2FilterChunk = 200

// addEC2Details fills private IPs and images. It filters by instance-id
// rather than passing InstanceIds, because the latter fails the whole call
// with InvalidInstanceID.NotFound when EC2 has not yet caught up with an
// instance Auto Scaling just launched.
func (p *Provider) addEC2Details(ctx context.Context, g *fleet.Group) error {
	members := make([]*fleet.Instance, 0, len(g.Instances))
	for i := range g.Instances {
		members = append(members, &g.Instances[i])
	}
	if g.WarmPool != nil {
		for i := range g.WarmPool.Instances {
			members = append(members, &g.WarmPool.Instances[i])
		}
	}
	byID := make(map[string]ec2types.Instance, len(members))
	for start := 0; start < len(members); start += ec2FilterChunk {
		ids := make([]string, 0, ec2FilterChunk)
		for _, m := range members[start:min(start+ec2FilterChunk, len(members))] {
			ids = append(ids, m.ID)
		}
		in := &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: awssdk.String("instance-id"), Values: ids}}}
		for {
			out, err := p.ec2.DescribeInstances(ctx, in)
			if err != nil {
				return classify("DescribeInstances", g.Name, err)
			}
			for _, r := range out.Reservations {
				for _, i := range r.Instances {
					byID[awssdk.ToString(i.InstanceId)] = i
				}
			}
			if awssdk.ToString(out.NextToken) == "" {
				break
			}
			in.NextToken = out.NextToken
		}
	}
	for _, m := range members {
		if i, ok := byID[m.ID]; ok {
			m.PrivateIP = awssdk.ToString(i.PrivateIpAddress)
			if img := awssdk.ToString(i.ImageId); img != "" {
				m.ImageID = img
			}
		}
	}
	return nil
}

// SetDesired calls SetDesiredCapacity.
func (p *Provider) SetDesired(ctx context.Context, group string, desired int, honorCooldown bool) error {
	if desired < 0 {
		return permanent("SetDesiredCapacity", group, fmt.Errorf("desired capacity %d is negative", desired))
	}
	_, err := p.as.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: awssdk.String(group),
		DesiredCapacity:      awssdk.Int32(int32(desired)),
		HonorCooldown:        awssdk.Bool(honorCooldown),
	})
	return classify("SetDesiredCapacity", group, err)
}

// Terminate calls TerminateInstanceInAutoScalingGroup. ErrNotFound means the
// instance is in no group any more: already terminated.
func (p *Provider) Terminate(ctx context.Context, instanceID string, decrement bool) error {
	_, err := p.as.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId:                     awssdk.String(instanceID),
		ShouldDecrementDesiredCapacity: awssdk.Bool(decrement),
	})
	return classify("TerminateInstanceInAutoScalingGroup", instanceID, err)
}

// CreateImage calls CreateImage. Image names are unique per account and
// region, so a repeated call (an activity retried after a lost answer) gets
// InvalidAMIName.Duplicate and is answered with the existing image, found by
// DescribeImages.
func (p *Provider) CreateImage(ctx context.Context, instanceID, name string, opts fleet.ImageOptions) (string, error) {
	in := &ec2.CreateImageInput{
		InstanceId: awssdk.String(instanceID),
		Name:       awssdk.String(name),
		NoReboot:   awssdk.Bool(opts.NoReboot),
	}
	if opts.Description != "" {
		in.Description = awssdk.String(opts.Description)
	}
	out, err := p.ec2.CreateImage(ctx, in)
	if err == nil {
		return awssdk.ToString(out.ImageId), nil
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "InvalidAMIName.Duplicate" {
		return "", classify("CreateImage", instanceID, err)
	}
	imgs, derr := p.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: []ec2types.Filter{{Name: awssdk.String("name"), Values: []string{name}}},
	})
	if derr != nil {
		return "", classify("DescribeImages", name, derr)
	}
	if len(imgs.Images) != 1 {
		return "", &fleet.Error{Op: "CreateImage", Subject: instanceID, Code: apiErr.ErrorCode(), Err: err,
			Hint: fmt.Sprintf("an image named %q exists but cannot be listed (being deregistered?); choose another name", name)}
	}
	return awssdk.ToString(imgs.Images[0].ImageId), nil
}

// ImageState calls DescribeImages. A failed image is reported as
// fleet.ImageFailed together with a permanent error carrying AWS's reason.
// ErrNotFound right after CreateImage can be EC2's eventual consistency:
// keep polling for a bounded time before giving up.
func (p *Provider) ImageState(ctx context.Context, imageID string) (fleet.ImageState, error) {
	out, err := p.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{imageID}})
	if err != nil {
		return "", classify("DescribeImages", imageID, err)
	}
	if len(out.Images) == 0 {
		return "", &fleet.Error{Op: "DescribeImages", Subject: imageID, Code: "NotFound", Class: fleet.ErrNotFound,
			Err: fmt.Errorf("image %s not found", imageID)}
	}
	img := out.Images[0]
	switch img.State {
	case ec2types.ImageStateAvailable:
		return fleet.ImageAvailable, nil
	case ec2types.ImageStatePending, ec2types.ImageStateTransient:
		return fleet.ImagePending, nil
	}
	reason := "no reason given"
	if img.StateReason != nil && awssdk.ToString(img.StateReason.Message) != "" {
		reason = awssdk.ToString(img.StateReason.Message)
	}
	return fleet.ImageFailed, permanent("DescribeImages", imageID,
		fmt.Errorf("image %s is %s: %s; create it again", imageID, img.State, reason))
}

// PublishLaunchTemplateVersion calls CreateLaunchTemplateVersion with the
// group's current version as SourceVersion and only ImageId set, then
// UpdateAutoScalingGroup to point the group at the new number. The
// ClientToken is derived from (template, source version, image), so a retry
// after a lost answer or a failed update gets the same version back instead
// of a second one.
func (p *Provider) PublishLaunchTemplateVersion(ctx context.Context, group, imageID string) (fleet.LaunchTemplateRef, error) {
	asg, err := p.group(ctx, group)
	if err != nil {
		return fleet.LaunchTemplateRef{}, err
	}
	if asg.LaunchTemplate == nil {
		hint := "attach a launch template to the group; launch configurations cannot carry new images"
		if asg.MixedInstancesPolicy != nil {
			hint = "groups with a mixed instances policy are not supported; use a single launch template"
		}
		return fleet.LaunchTemplateRef{}, &fleet.Error{Op: "PublishLaunchTemplateVersion", Subject: group, Code: "Unsupported",
			Err: errors.New("the group does not launch from a single launch template"), Hint: hint}
	}
	cur, err := p.resolveTemplate(ctx, asg.LaunchTemplate)
	if err != nil {
		return fleet.LaunchTemplateRef{}, err
	}
	if cur.ImageID == imageID {
		return cur, nil // already published: a retry after the update went through
	}
	sum := sha256.Sum256([]byte(cur.ID + "\x00" + cur.Version + "\x00" + imageID))
	out, err := p.ec2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
		LaunchTemplateId:   awssdk.String(cur.ID),
		SourceVersion:      awssdk.String(cur.Version),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: awssdk.String(imageID)},
		VersionDescription: awssdk.String(fmt.Sprintf("mageflow: image %s on version %s", imageID, cur.Version)),
		ClientToken:        awssdk.String("mageflow-" + hex.EncodeToString(sum[:16])),
	})
	if err != nil {
		return fleet.LaunchTemplateRef{}, classify("CreateLaunchTemplateVersion", cur.ID, err)
	}
	if out.LaunchTemplateVersion == nil {
		return fleet.LaunchTemplateRef{}, permanent("CreateLaunchTemplateVersion", cur.ID, errors.New("EC2 returned no version"))
	}
	next := templateRef(*out.LaunchTemplateVersion)
	if next.ImageID == "" {
		next.ImageID = imageID
	}
	if err := p.SetLaunchTemplateVersion(ctx, group, next); err != nil {
		return fleet.LaunchTemplateRef{}, err
	}
	return next, nil
}

// SetLaunchTemplateVersion calls UpdateAutoScalingGroup with the template.
func (p *Provider) SetLaunchTemplateVersion(ctx context.Context, group string, ref fleet.LaunchTemplateRef) error {
	if ref.Version == "" || (ref.ID == "" && ref.Name == "") {
		return permanent("UpdateAutoScalingGroup", group, fmt.Errorf("launch template reference %+v needs an ID or name and a version", ref))
	}
	spec := &astypes.LaunchTemplateSpecification{Version: awssdk.String(ref.Version)}
	if ref.ID != "" {
		spec.LaunchTemplateId = awssdk.String(ref.ID)
	} else {
		spec.LaunchTemplateName = awssdk.String(ref.Name)
	}
	_, err := p.as.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: awssdk.String(group),
		LaunchTemplate:       spec,
	})
	return classify("UpdateAutoScalingGroup", group, err)
}

// SetMinMax calls UpdateAutoScalingGroup with MinSize and MaxSize.
func (p *Provider) SetMinMax(ctx context.Context, group string, minSize, maxSize int) error {
	if minSize < 0 || maxSize < minSize {
		return permanent("UpdateAutoScalingGroup", group, fmt.Errorf("invalid bounds min %d, max %d", minSize, maxSize))
	}
	_, err := p.as.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: awssdk.String(group),
		MinSize:              awssdk.Int32(int32(minSize)),
		MaxSize:              awssdk.Int32(int32(maxSize)),
	})
	return classify("UpdateAutoScalingGroup", group, err)
}

// PutWarmPool calls PutWarmPool. Every field is sent, so the pool ends up
// exactly as cfg says (a zero MaxPreparedCapacity sends -1, AWS's default).
func (p *Provider) PutWarmPool(ctx context.Context, group string, cfg fleet.WarmPoolConfig) error {
	if cfg.MinSize < 0 || cfg.MaxPreparedCapacity < 0 {
		return permanent("PutWarmPool", group, fmt.Errorf("invalid warm pool sizes %+v", cfg))
	}
	state := cfg.State
	if state == "" {
		state = fleet.PoolStopped
	}
	maxPrepared := int32(-1)
	if cfg.MaxPreparedCapacity > 0 {
		maxPrepared = int32(cfg.MaxPreparedCapacity)
	}
	_, err := p.as.PutWarmPool(ctx, &autoscaling.PutWarmPoolInput{
		AutoScalingGroupName:     awssdk.String(group),
		MinSize:                  awssdk.Int32(int32(cfg.MinSize)),
		MaxGroupPreparedCapacity: awssdk.Int32(maxPrepared),
		PoolState:                astypes.WarmPoolState(state),
		InstanceReusePolicy:      &astypes.InstanceReusePolicy{ReuseOnScaleIn: awssdk.Bool(cfg.ReuseOnScaleIn)},
	})
	return classify("PutWarmPool", group, err)
}

// CompleteLifecycleAction calls CompleteLifecycleAction with the token and
// the instance ID.
func (p *Provider) CompleteLifecycleAction(ctx context.Context, a fleet.LifecycleAction, r fleet.Result) error {
	if err := a.Validate(); err != nil {
		return permanent("CompleteLifecycleAction", a.Group, err)
	}
	if r != fleet.Continue && r != fleet.Abandon {
		return permanent("CompleteLifecycleAction", a.Group, fmt.Errorf("result %q is neither CONTINUE nor ABANDON", r))
	}
	_, err := p.as.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName:  awssdk.String(a.Group),
		LifecycleHookName:     awssdk.String(a.Hook),
		LifecycleActionResult: awssdk.String(string(r)),
		LifecycleActionToken:  optional(a.Token),
		InstanceId:            optional(a.InstanceID),
	})
	return classify("CompleteLifecycleAction", a.Group, err)
}

// RecordLifecycleHeartbeat calls RecordLifecycleActionHeartbeat.
func (p *Provider) RecordLifecycleHeartbeat(ctx context.Context, a fleet.LifecycleAction) error {
	if err := a.Validate(); err != nil {
		return permanent("RecordLifecycleActionHeartbeat", a.Group, err)
	}
	_, err := p.as.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: awssdk.String(a.Group),
		LifecycleHookName:    awssdk.String(a.Hook),
		LifecycleActionToken: optional(a.Token),
		InstanceId:           optional(a.InstanceID),
	})
	return classify("RecordLifecycleActionHeartbeat", a.Group, err)
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return awssdk.String(s)
}

func permanent(op, subject string, err error) error {
	return &fleet.Error{Op: op, Subject: subject, Code: "InvalidArgument", Err: err}
}
