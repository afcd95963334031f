package model

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
)

var _ Model = (*Bedrock)(nil)

// BedrockConfig configures the Bedrock model.
type BedrockConfig struct {
	// AWS is the SDK configuration (region, credentials, endpoint, CA bundle),
	// loaded by the caller with the SDK's standard chain.
	AWS aws.Config
	// ChatModelID is required; SummaryModelID defaults to it.
	ChatModelID    string
	SummaryModelID string
	// GuardrailID and GuardrailVersion enable a guardrail (both or neither).
	GuardrailID      string
	GuardrailVersion string
	// MaxTokens caps one answer (0: the model's default).
	MaxTokens int32
	// IdleTimeout fails a stream that delivers no event for this long
	// (0: only the caller's deadline applies). Bedrock has no read timeout of
	// its own, so a stalled upstream would otherwise hang until the deadline.
	IdleTimeout time.Duration
	// Retries is how many times a request that failed before its stream
	// started (throttling, 5xx, connection errors) is retried. 0 fails fast:
	// a chat user sees nothing while the SDK backs off (~3.4 s for 3
	// attempts), and shedding load is what throttling asks for. A stream that
	// has started is never retried: its tokens already reached the client.
	Retries int
	// Clients caps the free list of idle clients kept for reuse.
	Clients int
	// Options are applied to every client after the defaults (tests set
	// BaseEndpoint here).
	Options []func(*bedrockruntime.Options)
}

// Bedrock streams answers from Amazon Bedrock's ConverseStream API.
//
// Every stream uses a bedrockruntime.Client that no other stream uses at the
// same time: smithy-go v1.28.8 shares an event-stream decoder between
// concurrent streams of one client (a data race). Clients come from a capped
// free list and are made on demand when it is empty; making one allocates but
// does no I/O, and all of them share the HTTP client's connection pool.
type Bedrock struct {
	cfg  BedrockConfig
	free chan *bedrockruntime.Client
}

// NewBedrock validates cfg and returns the model.
func NewBedrock(cfg BedrockConfig) (*Bedrock, error) {
	if cfg.ChatModelID == "" {
		return nil, errors.New("bedrock: chat model id is required")
	}
	if (cfg.GuardrailID == "") != (cfg.GuardrailVersion == "") {
		return nil, errors.New("bedrock: guardrail id and version go together")
	}
	if cfg.SummaryModelID == "" {
		cfg.SummaryModelID = cfg.ChatModelID
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 64
	}
	if cfg.AWS.HTTPClient == nil {
		cfg.AWS.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(TransportOptions(cfg.Clients))
	}
	if bc, ok := cfg.AWS.HTTPClient.(*awshttp.BuildableClient); ok {
		// One client for every stream (HTTP/2 where offered, see
		// upstream). Left a BuildableClient, it would be copied by the SDK,
		// with a transport of its own, for every bedrockruntime.Client.
		cfg.AWS.HTTPClient = newUpstream(bc)
	}
	cfg.AWS.HTTPClient = hideWriteTo{cfg.AWS.HTTPClient}
	return &Bedrock{cfg: cfg, free: make(chan *bedrockruntime.Client, cfg.Clients)}, nil
}

// hideWriteTo works around a race of the SDK over plain HTTP/1.1: once the
// response headers arrive the SDK closes the request body, whose WriteTo then
// returns io.EOF, and net/http's write loop closes the connection under the
// live response. Hiding WriteTo makes net/http copy with Read, which sees a
// clean end. HTTPS (production) is not affected; plain HTTP is what a local
// endpoint (AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://…) uses.
type hideWriteTo struct{ next aws.HTTPClient }

func (h hideWriteTo) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = struct {
			io.Reader
			io.Closer
		}{r.Body, r.Body}
	}
	return h.next.Do(r)
}

// Name implements Model.
func (b *Bedrock) Name() string { return "bedrock:" + b.cfg.ChatModelID }

// ModelIDs implements Model.
func (b *Bedrock) ModelIDs() []string {
	if b.cfg.SummaryModelID == b.cfg.ChatModelID {
		return []string{b.cfg.ChatModelID}
	}
	return []string{b.cfg.ChatModelID, b.cfg.SummaryModelID}
}

// Guarded implements Model.
func (b *Bedrock) Guarded() bool { return b.cfg.GuardrailID != "" }

func (b *Bedrock) client() *bedrockruntime.Client {
	select {
	case c := <-b.free:
		return c
	default:
	}
	opts := []func(*bedrockruntime.Options){func(o *bedrockruntime.Options) {
		if b.cfg.Retries == 0 {
			o.Retryer = aws.NopRetryer{}
		} else {
			o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = b.cfg.Retries + 1 })
		}
	}}
	return bedrockruntime.NewFromConfig(b.cfg.AWS, append(opts, b.cfg.Options...)...)
}

func (b *Bedrock) release(c *bedrockruntime.Client) {
	select {
	case b.free <- c:
	default:
	}
}

const rewriteInstruction = "\n\nYour previous answer to this message was blocked by the content policy. " +
	"Answer again, helpfully, staying within the policy."

func (b *Bedrock) input(req Request) *bedrockruntime.ConverseStreamInput {
	id := b.cfg.ChatModelID
	if req.Summary {
		id = b.cfg.SummaryModelID
	}
	in := &bedrockruntime.ConverseStreamInput{ModelId: aws.String(id)}
	sys := req.System
	if req.Rewrite > 0 {
		sys += rewriteInstruction
	}
	if sys != "" {
		in.System = []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: sys}}
	}
	for _, m := range req.Messages {
		role := types.ConversationRoleUser
		if m.Role == RoleAssistant {
			role = types.ConversationRoleAssistant
		}
		in.Messages = append(in.Messages, types.Message{Role: role,
			Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: m.Content}}})
	}
	if b.cfg.MaxTokens > 0 {
		in.InferenceConfig = &types.InferenceConfiguration{MaxTokens: aws.Int32(b.cfg.MaxTokens)}
	}
	if req.Tools {
		in.ToolConfig = &types.ToolConfiguration{Tools: []types.Tool{&types.ToolMemberToolSpec{Value: types.ToolSpecification{
			Name: aws.String(EscalationTool),
			Description: aws.String("Hand the conversation to a human agent. Call it when the user asks for a human, " +
				"is upset, or needs something you cannot do."),
			InputSchema: &types.ToolInputSchemaMemberJson{Value: document.NewLazyDocument(map[string]any{
				"type": "object",
				"properties": map[string]any{
					"reason": map[string]any{"type": "string", "description": "why a human is needed"},
				},
			})},
		}}}}
	}
	if b.cfg.GuardrailID != "" {
		// sync: Bedrock scans each chunk before it sends it, so every delta
		// we receive has passed the guardrail and can go to the client at
		// once, and a chunk the guardrail blocks never reaches us (async
		// would send it first and scan after). The trace names the policy
		// that intervened, for the turn's log line.
		in.GuardrailConfig = &types.GuardrailStreamConfiguration{
			GuardrailIdentifier:  aws.String(b.cfg.GuardrailID),
			GuardrailVersion:     aws.String(b.cfg.GuardrailVersion),
			StreamProcessingMode: types.GuardrailStreamProcessingModeSync,
			Trace:                types.GuardrailTraceEnabled,
		}
	}
	return in
}

// Stream implements Model.
func (b *Bedrock) Stream(ctx context.Context, req Request, onDelta func(string) error) (Result, error) {
	c := b.client()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var idle *time.Timer
	if b.cfg.IdleTimeout > 0 {
		idle = time.AfterFunc(b.cfg.IdleTimeout, func() { cancel(ErrStalled) })
		defer idle.Stop()
	}
	in := b.input(req)
	res := Result{ModelID: aws.ToString(in.ModelId)}
	out, err := c.ConverseStream(ctx, in)
	if err != nil {
		b.release(c)
		return res, classify(ctx, err)
	}
	stream := out.GetStream()
	defer func() {
		_ = stream.Close()
		// The client goes back to the free list only once its decoder
		// goroutine has finished: Close does not wait for it, but it closes
		// the events channel on its way out.
		for range stream.Events() {
		}
		b.release(c)
	}()
	stopped := false
	for ev := range stream.Events() {
		if idle != nil {
			idle.Reset(b.cfg.IdleTimeout)
		}
		switch v := ev.(type) {
		case *types.ConverseStreamOutputMemberContentBlockStart:
			if tu, ok := v.Value.Start.(*types.ContentBlockStartMemberToolUse); ok && aws.ToString(tu.Value.Name) == EscalationTool {
				res.Escalate = true
			}
		case *types.ConverseStreamOutputMemberContentBlockDelta:
			if t, ok := v.Value.Delta.(*types.ContentBlockDeltaMemberText); ok && t.Value != "" {
				if err := onDelta(t.Value); err != nil {
					return res, err
				}
			}
		case *types.ConverseStreamOutputMemberMessageStop:
			stopped = true
			res.StopReason = string(v.Value.StopReason)
		case *types.ConverseStreamOutputMemberMetadata:
			if u := v.Value.Usage; u != nil {
				res.InputTokens, res.OutputTokens = int(aws.ToInt32(u.InputTokens)), int(aws.ToInt32(u.OutputTokens))
			}
			if tr := v.Value.Trace; tr != nil && tr.Guardrail != nil {
				res.Guardrail = describeGuardrail(tr.Guardrail)
			}
		}
	}
	if err := stream.Err(); err != nil {
		return res, classify(ctx, err)
	}
	if ctx.Err() != nil {
		return res, classify(ctx, ctx.Err())
	}
	if !stopped {
		return res, &Error{Kind: KindTruncated, Err: ErrTruncated}
	}
	switch res.StopReason {
	case StopGuardrail, StopFiltered:
		res.Blocked = true
	}
	return res, nil
}

// classify maps SDK and context errors to an *Error; the caller's own
// cancellation is returned unwrapped so the chat turn can tell it apart.
func classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		switch {
		case errors.Is(cause, ErrStalled):
			return &Error{Kind: KindStalled, Err: cause}
		case errors.Is(cause, context.DeadlineExceeded):
			return &Error{Kind: KindTimeout, Err: cause}
		}
		return cause
	}
	var (
		throttle *types.ThrottlingException
		quota    *types.ServiceQuotaExceededException
		stream   *types.ModelStreamErrorException
		modelErr *types.ModelErrorException
		timeout  *types.ModelTimeoutException
		notReady *types.ModelNotReadyException
		internal *types.InternalServerException
		unavail  *types.ServiceUnavailableException
		invalid  *types.ValidationException
		denied   *types.AccessDeniedException
		missing  *types.ResourceNotFoundException
	)
	kind := KindOther
	switch {
	case errors.As(err, &throttle), errors.As(err, &quota):
		kind = KindThrottled
	case errors.As(err, &stream), errors.As(err, &modelErr), errors.As(err, &timeout):
		kind = KindModel
	case errors.As(err, &notReady), errors.As(err, &internal), errors.As(err, &unavail):
		kind = KindUnavailable
	case errors.As(err, &invalid), errors.As(err, &denied), errors.As(err, &missing):
		kind = KindValidation
	}
	return &Error{Kind: kind, Err: fmt.Errorf("converse stream: %w", err)}
}

// describeGuardrail condenses a guardrail trace into one log-friendly line:
// the action reason and the policies that acted on the output.
func describeGuardrail(g *types.GuardrailTraceAssessment) string {
	var parts []string
	if r := aws.ToString(g.ActionReason); r != "" {
		parts = append(parts, r)
	}
	for _, as := range g.OutputAssessments {
		for _, a := range as {
			if cp := a.ContentPolicy; cp != nil {
				for _, f := range cp.Filters {
					parts = append(parts, "contentPolicy "+string(f.Type))
				}
			}
			if tp := a.TopicPolicy; tp != nil {
				for _, t := range tp.Topics {
					parts = append(parts, "topicPolicy "+aws.ToString(t.Name))
				}
			}
			if wp := a.WordPolicy; wp != nil && (len(wp.CustomWords) > 0 || len(wp.ManagedWordLists) > 0) {
				parts = append(parts, "wordPolicy")
			}
			if sp := a.SensitiveInformationPolicy; sp != nil && (len(sp.PiiEntities) > 0 || len(sp.Regexes) > 0) {
				parts = append(parts, "sensitiveInformationPolicy")
			}
		}
	}
	return strings.Join(parts, "; ")
}
