package store

import (
	"context"

	"github.com/mageflow/mageflow/internal/platform/config"
)

// Configured opens the artifact store the config's artifacts: section
// names: S3 when s3 is set, else the local folder.
func Configured(ctx context.Context, a config.Artifacts) (Store, error) {
	if s3 := a.S3; s3 != nil {
		return NewS3(ctx, S3Config{Bucket: s3.Bucket, Prefix: s3.Prefix, Region: s3.Region, Endpoint: s3.Endpoint, PathStyle: s3.PathStyle})
	}
	return NewLocal(a.Dir)
}
