package repo

import (
	"context"
	"errors"

	"github.com/ckpt/ckpt/internal/backend"
)

// RepositoryLock is the name of the lock every writer holds shared and gc
// exclusive (backend.Backend.Lock), for code that writes or removes blobs
// of a repository without a Repository (the agent's level copies and gc).
const RepositoryLock = repoLock

// openAgentRepo opens a repository in a group's store on a ckpt agent
// ("agent://HOST:PORT/GROUP"); the token comes from CKPT_AGENT_TOKEN_FILE
// or CKPT_AGENT_TOKEN. create makes a missing one (unencrypted).
func openAgentRepo(ctx context.Context, loc string, key []byte, create bool) (*Repository, error) {
	be, err := openAgentBackend(ctx, loc)
	if err != nil {
		return nil, err
	}
	r, err := Open(ctx, be, key)
	if errors.Is(err, ErrNotRepository) && create && key == nil {
		return Init(ctx, be, InitOptions{})
	}
	return r, err
}

func initAgentRepo(ctx context.Context, loc string, opts InitOptions) (*Repository, error) {
	be, err := openAgentBackend(ctx, loc)
	if err != nil {
		return nil, err
	}
	return Init(ctx, be, opts)
}

func openAgentBackend(ctx context.Context, loc string) (*backend.Agent, error) {
	tok, err := backend.AgentTokenFromEnv("")
	if err != nil {
		return nil, err
	}
	return backend.OpenAgent(ctx, loc, tok)
}
