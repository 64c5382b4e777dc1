using LSVCR.Data;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>
/// The SR model of MODEL.md §2 ("RecCom"), the part of LSVCR that is deployed. Item text embeddings are fixed inputs
/// held as non-persistent buffers (not parameters, not in checkpoints): they come from the embeddings artifacts.
/// Field names are the reference parameter names, so <c>state_dict()</c> keys equal the PyTorch release's.
/// <para>Written in plain TorchSharp: the parts that have a faster CPU form (the layers, the input layer, the linear
/// maps, candidate normalisation, the softmax and id–text losses) come from <see cref="Backend"/>, chosen once by
/// <see cref="ModelBackend.Select"/>; this file and the modules it builds are the whole model.</para>
/// </summary>
public sealed partial class RecCom : nn.Module
{
    /// <summary>Negatives per side of the id–text loss (reference <c>contrast_neg_num</c>).</summary>
    public const int IdTextNegatives = 99;

#pragma warning disable IDE1006 // reference parameter names
    private readonly Embedding? photo_embedding;
    private readonly Parameter? gate;
    private readonly Embedding? comment_embedding;
    private readonly Embedding pposition_embedding;
    private readonly Embedding cposition_embedding;
    private readonly LayerNorm photo_layernorm;
    private readonly LayerNorm comment_layernorm;
    private readonly Linear? llm_adapter;
    private readonly Linear? pc_merge;
    private readonly TransformerStack phis_encoder;
    private readonly TransformerStack chis_encoder;
    private readonly TransformerStack phis_mix_layer;
    private readonly TransformerStack chis_mix_layer;
    private readonly Linear p_linear;
    private readonly Linear c_linear;
    private readonly MultiHeadAttention comm_rank_att;
    private readonly AdditiveAttention rec_att;
    private Tensor photo_text;
    private Tensor comment_text;
#pragma warning restore IDE1006

    /// <param name="photoText">[PhotoCount, TextDim] float32 title embeddings, row 0 = pad.</param>
    /// <param name="commentText">[CommentCount, TextDim] float32 comment embeddings, row 0 = pad.</param>
    /// <param name="generator">The run's generator: initial weights, then <see cref="Generator"/>; null = torch's global one.</param>
    /// <param name="backend">The implementation of the parts; null = <see cref="ModelBackend.Select"/> for a float32
    /// model on the CPU (the CPU kernels where the machine supports them).</param>
    public RecCom(RecComConfig config, Tensor photoText, Tensor commentText, ModelBackend? backend = null, Generator? generator = null) : base("reccom")
    {
        Generator = generator;
        Config = config;
        Backend = backend ?? ModelBackend.Select(CPU, ScalarType.Float32);
        Validate(config, photoText, commentText);
        var d = config.Hidden;
        if (config.UseIds)
        {
            photo_embedding = nn.Embedding(config.PhotoCount, d, padding_idx: 0);
            gate = new Parameter(tensor(1.0f));
        }
        if (config.CommentIds) comment_embedding = nn.Embedding(config.CommentCount, d, padding_idx: 0);
        pposition_embedding = nn.Embedding(config.MaxPosition, d);
        cposition_embedding = nn.Embedding(config.MaxPosition, d);
        photo_layernorm = nn.LayerNorm(d, config.LayerNormEps);
        comment_layernorm = nn.LayerNorm(d, config.LayerNormEps);
        if (config.UseText)
        {
            llm_adapter = nn.Linear(config.TextDim, d, hasBias: false);
            pc_merge = nn.Linear(2 * d, d);
        }
        phis_encoder = new TransformerStack(config, config.EncoderLayers, "phis_encoder", Backend);
        chis_encoder = new TransformerStack(config, config.EncoderLayers, "chis_encoder", Backend);
        phis_mix_layer = new TransformerStack(config, config.MixLayers, "phis_mix_layer", Backend);
        chis_mix_layer = new TransformerStack(config, config.MixLayers, "chis_mix_layer", Backend);
        p_linear = nn.Linear(2 * d, d);
        c_linear = nn.Linear(2 * d, d);
        comm_rank_att = Backend.MultiHeadAttention(config);
        rec_att = Backend.AdditiveAttention(config);

        photo_text = photoText.to(ScalarType.Float32).detach();
        comment_text = commentText.to(ScalarType.Float32).detach();
        register_buffer(nameof(photo_text), photo_text, persistent: false);
        register_buffer(nameof(comment_text), comment_text, persistent: false);
        RegisterComponents();
        InitWeights(generator);
    }

    public RecComConfig Config { get; }

    /// <summary>The implementation of the model's parts (<see cref="ModelBackend.Plain"/> or the CPU kernels).</summary>
    public ModelBackend Backend { get; }

    /// <summary><c>to(dtype)</c> / <c>to(device)</c> also convert the text tables: TorchSharp's epilogue leaves
    /// non-persistent buffers alone (they are not in <c>named_buffers</c>), and scoring would then mix dtypes or
    /// devices.</summary>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        base._toEpilog(dtype, device, non_blocking);
        photo_text = Convert(photo_text);
        comment_text = Convert(comment_text);

        Tensor Convert(Tensor t)
        {
            var target = dtype ?? t.dtype;
            var onDevice = device is null || (device.type == t.device_type && (device.index == t.device_index || device.index < 0 && t.device_index < 0));
            if (target == t.dtype && onDevice) return t;
            var moved = (device is null ? t.to(target) : t.to(target, device)).detach();
            t.Dispose();
            return moved;
        }
    }

    /// <summary>The run's generator for everything random in a training step — the id–text negatives and the seeds of
    /// the dropout masks — so runs sharing a process draw from their own streams; null = torch's global generator
    /// (<c>torch.manual_seed</c>), which concurrent runs would interleave.</summary>
    public Generator? Generator { get; set; }

    private static void Validate(RecComConfig c, Tensor photoText, Tensor commentText)
    {
        if (!c.IsValidShape)
            throw new ArgumentException($"Invalid RecCom shape: PhotoCount={c.PhotoCount}, CommentCount={c.CommentCount}, Hidden={c.Hidden} must be divisible by Heads={c.Heads}.");
        if (!c.UseIds && !c.UseText)
            throw new ArgumentException("RecCom needs ids or text (UseIds and UseText are both false).");
        if (c.MaxPosition < 1) throw new ArgumentException($"MaxPosition must be positive, got {c.MaxPosition}.");
        void Check(Tensor t, long rows, string what)
        {
            if (t.dim() != 2 || t.shape[0] != rows || t.shape[1] != c.TextDim)
                throw new ArgumentException($"{what} text table has shape [{string.Join(", ", t.shape)}], expected [{rows}, {c.TextDim}].");
        }
        Check(photoText, c.PhotoCount, "Video");
        Check(commentText, c.CommentCount, "Comment");
    }

    /// <summary>Reference init: Linear/Embedding weights N(0, 0.02), biases 0, LayerNorm 1/0, gate 1; pad rows 0.</summary>
    private void InitWeights(Generator? generator)
    {
        using var _ = no_grad();
        foreach (var (_, m) in named_modules())
        {
            switch (m)
            {
                case Linear l:
                    l.weight!.normal_(0, 0.02, generator);
                    if (l.bias is not null) nn.init.zeros_(l.bias);
                    break;
                case Embedding e:
                    e.weight!.normal_(0, 0.02, generator);
                    break;
                case LayerNorm ln:
                    nn.init.ones_(ln.weight);
                    nn.init.zeros_(ln.bias);
                    break;
            }
        }
        // padding_idx semantics: the pad row is never trained; keep it at zero so it adds nothing.
        photo_embedding?.weight!.narrow(0, 0, 1).zero_();
        comment_embedding?.weight!.narrow(0, 0, 1).zero_();
    }

    /// <summary>
    /// User vectors for the task, normalised, [B, Hidden]: Rec = rec_att over the mixed video history; CommRank =
    /// comm_rank_att with the watched video (batch.Target) as query over the mixed comment history.
    /// With <paramref name="withIdTextLoss"/> (training, ids enabled) also returns the §4 id–text alignment loss
    /// (unweighted scalar), else null.
    /// </summary>
    public (Tensor User, Tensor? IdTextLoss) Encode(SrBatch batch, TaskKind task, bool withIdTextLoss = false)
        => Encode(batch, task, withIdTextLoss, null);

    internal (Tensor User, Tensor? IdTextLoss) Encode(SrBatch batch, TaskKind task, bool withIdTextLoss, Tensor? titleTable)
    {
        using var scope = NewDisposeScope();
        // Dropout draws one seed per call: from a stream seeded once from the run's generator (the sharded step does
        // the same per slice).
        using var seeds = training && Generator is not null ? new Dropout.Seeds(Dropout.NextSeed(Generator)).Use() : null;
        var inputs = EncodeInputs(batch, titleTable);
        var user = EncodeUser(inputs, batch.Target, task, titleTable);
        var idText = withIdTextLoss ? AlignmentLoss(inputs.PhotoIds, inputs.PhotoId, inputs.PhotoText, inputs.CommentIds, inputs.CommentId, inputs.CommentText) : null;
        return (user.MoveToOuterDisposeScope(), idText?.MoveToOuterDisposeScope());
    }

    /// <summary>Steps 1–3 of one batch: the transformer inputs and, for the id–text loss, the per-position id
    /// embeddings and text vectors they were built from (null where the variant has none).</summary>
    internal sealed record Inputs(Tensor Photo, Tensor Comment, Tensor PhotoIds, Tensor CommentIds,
        Tensor? PhotoId, Tensor? PhotoText, Tensor? CommentId, Tensor? CommentText)
    {
        public Inputs Map(Func<Tensor, Tensor> f) => new(f(Photo), f(Comment), f(PhotoIds), f(CommentIds),
            PhotoId is null ? null : f(PhotoId), PhotoText is null ? null : f(PhotoText),
            CommentId is null ? null : f(CommentId), CommentText is null ? null : f(CommentText));
    }

    internal Inputs EncodeInputs(SrBatch batch, Tensor? titleTable)
    {
        var c = Config;
        var pIds = NonEmpty(batch.PhotoHistory);
        var pCom = NonEmpty(batch.PhotoHistoryComment);
        var cIds = NonEmpty(batch.CommentHistoryPhoto);
        var cCom = batch.CommentHistoryComments.Entries == cIds.numel() ? batch.CommentHistoryComments
            : batch.CommentHistoryComments.Entries == batch.CommentHistoryPhoto.numel() ? CommentBags.Empty(cIds.numel())
            : throw new ArgumentException($"The batch has {batch.CommentHistoryComments.Entries} comment-history entries' comment lists for {batch.CommentHistoryPhoto.numel()} entries.");
        var (lp, lc) = (pIds.shape[1], cIds.shape[1]);
        if (lp > c.MaxPosition || lc > c.MaxPosition)
            throw new ArgumentException($"History longer than MaxPosition={c.MaxPosition} (video {lp}, comment {lc}); truncate to the most recent entries.");

        // Step 1: per-position text vectors x.
        Tensor? xp = null, xc = null;
        if (c.UseText)
        {
            var table = titleTable ?? (photo_text.shape[0] <= pIds.numel() + cIds.numel() ? AdaptedTitles() : null);
            // pc_merge(cat[title, llm_adapter(text)]) = title·W_tᵀ + text·(W_c·W_adapter)ᵀ + b, with W = [W_t | W_c]
            // (llm_adapter has no bias): the comment half folded into one [d, TextDim] map saves the concatenation
            // and a [rows, d] × [d, d] product per history, forward and backward, and the same parameters train.
            var titleHalf = pc_merge!.weight!.narrow(1, 0, c.Hidden);
            var commentMap = pc_merge.weight!.narrow(1, c.Hidden, c.Hidden).matmul(llm_adapter!.weight!);
            xp = Merge(Titles(pIds, table), Gather(comment_text, pCom), titleHalf, commentMap);
            xc = Merge(Titles(cIds, table), MeanText(cCom).view(cIds.shape[0], cIds.shape[1], -1), titleHalf, commentMap);
        }
        else if (comment_embedding is not null)
        {
            xc = cCom.Mean(comment_embedding.weight!).view(cIds.shape[0], cIds.shape[1], -1);
        }

        // Step 3: input = gate·id + x + pos, LayerNorm, dropout.
        Tensor? pId = null, cId = null;
        if (c.UseIds)
        {
            pId = photo_embedding!.forward(pIds);
            cId = photo_embedding!.forward(cIds);
        }
        var inP = Input(pId, xp, pposition_embedding, lp, photo_layernorm);
        var inC = Input(cId, xc, cposition_embedding, lc, comment_layernorm);
        return new Inputs(inP, inC, pIds, cIds, pId, xp, cId, xc);
    }

    /// <summary>Steps 4–7: the user vector of the task from the inputs (un-normalised → normalised, [B, Hidden]);
    /// <paramref name="target"/> is the CommRank query (the watched video), unused for Rec.</summary>
    internal Tensor EncodeUser(Inputs inputs, Tensor target, TaskKind task, Tensor? titleTable)
    {
        var (pIds, cIds) = (inputs.PhotoIds, inputs.CommentIds);
        // Steps 4-6 (mixing from the un-mixed Hp, Hc).
        var causalP = Masks.Causal(pIds);
        var causalC = Masks.Causal(cIds);
        var bidirP = Masks.Bidirectional(pIds);
        var bidirC = Masks.Bidirectional(cIds);
        var hp = phis_encoder.forward(inputs.Photo, inputs.Photo, causalP);
        var hc = chis_encoder.forward(inputs.Comment, inputs.Comment, causalC);
        // Step 7: heads. Each task reads one side of the mixing, so only that side is computed (the other would
        // not reach the output: Rec uses Mp only, CommRank Mc only).
        Tensor user;
        if (task == TaskKind.Rec)
        {
            var mp = phis_mix_layer.forward(hp, hc, bidirC);
            var hpFinal = Project(p_linear, hp, mp);
            user = rec_att.forward(hpFinal, bidirP.view(bidirP.shape[0], -1));
        }
        else
        {
            var mc = chis_mix_layer.forward(hc, hp, bidirP);
            var hcFinal = Project(c_linear, hc, mc);
            var q = QueryOrCandidate(target, titleTable);
            user = comm_rank_att.forward(q.unsqueeze(1), hcFinal, bidirC).squeeze(1);
        }
        return F.normalize(user, dim: -1);
    }

    /// <summary>The §4 id–text loss over both histories (unweighted; null when the variant lacks ids or text):
    /// <paramref name="photoIds"/>/<paramref name="commentIds"/> [B, L] pick the non-pad positions of the [B, L, d]
    /// id embeddings and text vectors.</summary>
    internal Tensor? AlignmentLoss(Tensor photoIds, Tensor? photoId, Tensor? photoText, Tensor commentIds, Tensor? commentId, Tensor? commentText)
    {
        if (!Config.UseIds || !Config.UseText) return null;
        var (photo, comment) = (DrawNegatives(photoIds), DrawNegatives(commentIds));
        return PositionLoss(photoId!, photoText!, photo).add(PositionLoss(commentId!, commentText!, comment));
    }

    /// <summary>One history's non-pad positions (flat rows) and their id–text negatives (null below 2 positions).</summary>
    internal sealed record NegativeDraw(Tensor Rows, IdTextLoss.Layout? Layout);

    /// <summary>Draws the negatives of one history's positions from <see cref="Generator"/>; <paramref name="ids"/> [B, L].</summary>
    internal NegativeDraw DrawNegatives(Tensor ids)
    {
        var keep = ids.ne(0).view(-1).nonzero().view(-1);
        return new NegativeDraw(keep, keep.numel() < 2 ? null : IdTextLoss.Sample(keep.numel(), IdTextNegatives, Generator));
    }

    /// <summary>One history's id–text loss: <paramref name="id"/>, <paramref name="x"/> [B, L, d] at the drawn positions.</summary>
    internal Tensor PositionLoss(Tensor id, Tensor x, NegativeDraw draw)
    {
        var d = id.shape[^1];
        return IdTextLoss.Compute(id.reshape(-1, d), x.reshape(-1, d), draw.Layout, Config.Temperature, draw.Rows, Backend);
    }

    /// <summary>pc_merge over [title, llm_adapter(text)] without the concatenation (see <see cref="EncodeInputs"/>):
    /// title·W_tᵀ + text·(W_c·W_adapter)ᵀ + b.</summary>
    private Tensor Merge(Tensor title, Tensor text, Tensor titleHalf, Tensor commentMap) =>
        Backend.Linear(title, titleHalf, text, commentMap, pc_merge!.bias);

    /// <summary>p_linear / c_linear over cat([h, m], −1) with weight [W_1 | W_2] as h·W_1ᵀ + m·W_2ᵀ + b: the same
    /// product without writing the [rows, 2d] concatenation and reading it back (and its gradient).</summary>
    internal Tensor Project(Linear linear, Tensor h, Tensor m)
    {
        var d = h.shape[^1];
        return Backend.Linear(h, linear.weight!.narrow(1, 0, d), m, linear.weight!.narrow(1, d, d), linear.bias);
    }

    /// <summary>Step 3: Dropout(LayerNorm(gate·id + x + pos)) over the first <paramref name="length"/> positions.</summary>
    private Tensor Input(Tensor? id, Tensor? x, Embedding position, long length, LayerNorm norm) =>
        Backend.Input(id, id is null ? null : gate, x, position.weight!.narrow(0, 0, length), norm, Config.HiddenDropout, Config.LayerNormEps, training);

    /// <summary>Zero-length histories become one pad column so attention has a (fully masked, finite) key.</summary>
    private static Tensor NonEmpty(Tensor ids) =>
        ids.shape[1] > 0 ? ids : zeros(ids.shape[0], 1, dtype: ScalarType.Int64);

    /// <summary>llm_adapter over the whole title table, [PhotoCount, d]: cheaper than per-position projection when
    /// the batch touches more positions than the catalogue has videos, and shared with full-softmax scoring.</summary>
    internal Tensor AdaptedTitles() => Adapt(photo_text);

    /// <summary>llm_adapter(text).</summary>
    private Tensor Adapt(Tensor text) => Backend.Linear(text, llm_adapter!.weight!, null, null, null);

    private Tensor Titles(Tensor ids, Tensor? table) =>
        table is not null ? Gather(table, ids) : Adapt(Gather(photo_text, ids));

    private static Tensor Gather(Tensor table, Tensor ids)
    {
        var shape = ids.shape.Append(table.shape[1]).ToArray();
        return table.index_select(0, ids.reshape(-1)).view(shape);
    }

    /// <summary>Mean of the raw text embeddings of each entry's comments (all of them), [B·L, E] (<see cref="GatherMean"/>:
    /// pad 0 excluded from sum and count, an entry with no comments gives 0 — the same as <see cref="CommentBags.Mean"/>).
    /// Averaging before llm_adapter is the same as averaging after it (linear, no bias) and keeps the per-comment
    /// gather out of memory and out of autograd.</summary>
    private Tensor MeanText(CommentBags comments)
    {
        using var _ = no_grad();
        return Backend.RowMean(comment_text, comments);
    }

    /// <summary>gate·id_emb(v) + llm_adapter(t(v)) (un-normalised): the CommRank query and the video candidate.</summary>
    private Tensor QueryOrCandidate(Tensor videos, Tensor? titleTable)
    {
        Tensor? text = Config.UseText ? Titles(videos, titleTable) : null;
        Tensor? id = Config.UseIds ? photo_embedding!.forward(videos).mul(gate!) : null;
        return text is null ? id! : id is null ? text : id.add(text);
    }

    /// <summary>Normalised candidate vectors of videos: gate·id_emb + llm_adapter(title). ids = null → all videos [PhotoCount, Hidden].</summary>
    public Tensor VideoVectors(Tensor? ids = null) => VideoVectors(ids, null);

    internal Tensor VideoVectors(Tensor? ids, Tensor? titleTable)
    {
        using var scope = NewDisposeScope();
        Tensor v;
        if (ids is null)
        {
            Tensor? text = Config.UseText ? titleTable ?? AdaptedTitles() : null;
            return Backend.CandidateVectors(Config.UseIds ? photo_embedding!.weight! : null, Config.UseIds ? gate : null, text)
                .MoveToOuterDisposeScope();
        }
        else v = QueryOrCandidate(ids, titleTable);
        return F.normalize(v, dim: -1).MoveToOuterDisposeScope();
    }

    /// <summary>Normalised candidate vectors of comments: llm_adapter(text) (id-only variant: comment id embedding).</summary>
    public Tensor CommentVectors(Tensor ids)
    {
        using var scope = NewDisposeScope();
        Tensor v;
        if (Config.UseText) v = Adapt(Gather(comment_text, ids));
        else if (comment_embedding is not null) v = comment_embedding.forward(ids);
        else throw new InvalidOperationException("This RecCom has neither comment texts nor comment ids (UseText=false, CommentIds=false): it cannot score comments.");
        return F.normalize(v, dim: -1).MoveToOuterDisposeScope();
    }

    /// <summary>Cosine/T scores of normalised user vectors [B, d] against all videos → [B, PhotoCount]; column 0 (pad) = -1e6.</summary>
    public Tensor ScoreAllVideos(Tensor user) => ScoreAllVideos(user, null);

    internal Tensor ScoreAllVideos(Tensor user, Tensor? titleTable)
    {
        using var scope = NewDisposeScope();
        var videos = VideoVectors(null, titleTable);
        var scores = user.matmul(videos.t()).div_(Config.Temperature);
        return scores.index_fill(1, tensor(new long[] { 0 }), Masks.Hidden).MoveToOuterDisposeScope();
    }

    /// <summary>Mean cross-entropy of the Rec full softmax: the same value as <c>cross_entropy(ScoreAllVideos(user),
    /// target)</c>, whose pad column (−1e6) has probability 0, computed without the pad column (targets shift by one)
    /// and with 1/T applied to the [B, d] users instead of the [B, PhotoCount] scores: two fewer passes over the
    /// largest tensor of a training step, forward and backward (the CPU backend's kernel then never materialises
    /// the log-probabilities).</summary>
    /// <paramref name="candidates"/>: <see cref="FullSoftmaxCandidates"/> when the caller has them already (the
    /// sharded step computes them once for all slices).
    internal Tensor FullSoftmaxLoss(Tensor user, Tensor target, Tensor? titleTable, Tensor? candidates = null)
    {
        using var scope = NewDisposeScope();
        if (target.numel() > 0 && target.min().item<long>() < 1)
            throw new ArgumentException("A Rec target is the pad video (id 0); targets must be real videos.", nameof(target));
        var videos = candidates ?? FullSoftmaxCandidates(titleTable);
        return Backend.SoftmaxCrossEntropy(user.div(Config.Temperature), videos, target.sub(1)).MoveToOuterDisposeScope();
    }

    /// <summary>The normalised vectors of all real videos (rows 1…, no pad row), [PhotoCount − 1, Hidden]: the
    /// candidates of <see cref="FullSoftmaxLoss"/>.</summary>
    internal Tensor FullSoftmaxCandidates(Tensor? titleTable) => VideoVectors(null, titleTable).narrow(0, 1, Config.PhotoCount - 1);

    /// <summary>Cosine/T scores against per-example candidates [B, C] (video ids for Rec, comment ids for CommRank); pad candidates (0) = -1e6.</summary>
    public Tensor ScoreCandidates(Tensor user, Tensor candidates, TaskKind task) => ScoreCandidates(user, candidates, task, null);

    internal Tensor ScoreCandidates(Tensor user, Tensor candidates, TaskKind task, Tensor? titleTable)
    {
        using var scope = NewDisposeScope();
        var vectors = task == TaskKind.Rec ? VideoVectors(candidates, titleTable) : CommentVectors(candidates);
        var scores = vectors.matmul(user.unsqueeze(-1)).squeeze(-1).div_(Config.Temperature);
        return scores.masked_fill(candidates.eq(0), Masks.Hidden).MoveToOuterDisposeScope();
    }
}
