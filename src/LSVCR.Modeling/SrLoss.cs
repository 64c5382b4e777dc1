using LSVCR.Modeling.Cpu;
using LSVCR.Data;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>The loss values of one training step (<see cref="SrLoss.Backward"/>).</summary>
public readonly record struct StepLosses(double Total, double Task, double? IdText);

/// <summary>Stage-2 training losses (MODEL.md §4).</summary>
public static class SrLoss
{
    /// <summary>Data-parallel shards of a training step by default (<see cref="Backward"/>).</summary>
    public const int DefaultShards = 2;

    /// <summary>
    /// Rec, <paramref name="candidates"/> null: full softmax cross-entropy over all videos (pad masked), label = batch.Target.
    /// Rec, candidates [B, 1+k] (target first): sampled softmax, label 0.
    /// CommRank: candidates [B, 1+n] comment ids, positive first, label 0 (required).
    /// Total = task + <paramref name="idTextWeight"/>·idText; the id–text term is computed only when the weight is
    /// positive, the model is in training mode and uses ids and text (else IdText is null).
    /// </summary>
    public static (Tensor Total, Tensor Task, Tensor? IdText) Compute(RecCom model, SrBatch batch, TaskKind task,
        Tensor? candidates, double idTextWeight)
    {
        CheckCandidates(task, candidates);
        using var scope = NewDisposeScope();
        var withIdText = WithIdText(model, idTextWeight);
        var titles = Titles(model, task, candidates);
        var (user, idText) = model.Encode(batch, task, withIdText, titles);
        var taskLoss = TaskLoss(model, user, batch.Target, task, candidates, titles);
        var total = idText is null ? taskLoss.alias() : taskLoss.add(idText.mul(idTextWeight));
        return (total.MoveToOuterDisposeScope(), taskLoss.MoveToOuterDisposeScope(), idText?.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// One training step's forward and backward: the loss of <see cref="Compute"/>, its gradients added to the
    /// parameters' <c>.grad</c>. With <paramref name="shards"/> &gt; 1 the batch is cut into that many consecutive
    /// slices, each encoded and differentiated on its own (concurrently when libtorch has a thread per shard, see
    /// <see cref="ShardWorkers"/>), and the slices' parameter gradients are added in shard order. The result is the
    /// same loss and gradient as one pass over the whole batch, up to float rounding:
    /// <list type="bullet">
    /// <item>each task loss is a mean over examples, so the slices' means are weighted by their sizes;</item>
    /// <item>the id–text loss draws its negatives from the whole batch (MODEL.md §4), so it is computed once, between
    /// the slices' input layers and their encoders, on all positions, and its gradient goes back into each slice's
    /// backward;</item>
    /// <item>the Rec full softmax's title table and all-video vectors are computed once and shared by the slices (their
    /// gradients summed, then one backward through them);</item>
    /// <item>dropout seeds come from one stream per slice, seeded from the model's <see cref="RecCom.Generator"/>, so a seeded run is
    /// reproducible whatever the thread count (the masks differ from those of an unsharded step).</item>
    /// </list>
    /// Shards = 1 is exactly <c>Compute(…).Total.backward()</c>.
    /// </summary>
    public static StepLosses Backward(RecCom model, SrBatch batch, TaskKind task, Tensor? candidates, double idTextWeight,
        int shards = DefaultShards)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shards, 1);
        CheckCandidates(task, candidates);
        using var scope = NewDisposeScope();
        var n = batch.Size;
        shards = (int)Math.Min(shards, Math.Max(1, n));
        if (shards == 1)
        {
            var (total, taskLoss, idText) = Compute(model, batch, task, candidates, idTextWeight);
            total.backward();
            return new StepLosses(total.to(ScalarType.Float64).item<double>(), taskLoss.to(ScalarType.Float64).item<double>(), idText?.to(ScalarType.Float64).item<double>());
        }
        return new ShardedStep(model, batch, task, candidates, idTextWeight, shards).Run();
    }

    private static void CheckCandidates(TaskKind task, Tensor? candidates)
    {
        if (task == TaskKind.CommRank && candidates is null)
            throw new ArgumentException("CommRank loss needs candidates [B, 1+n] with the positive comment first.", nameof(candidates));
    }

    private static bool WithIdText(RecCom model, double idTextWeight) =>
        idTextWeight > 0 && model.training && model.Config.UseIds && model.Config.UseText;

    /// <summary>One llm_adapter pass over the title table serves history titles, the CommRank query and all-video scoring.</summary>
    private static Tensor? Titles(RecCom model, TaskKind task, Tensor? candidates) =>
        model.Config.UseText && task == TaskKind.Rec && candidates is null ? model.AdaptedTitles() : null;

    private static Tensor TaskLoss(RecCom model, Tensor user, Tensor target, TaskKind task, Tensor? candidates, Tensor? titles,
        Tensor? allVideos = null)
    {
        if (candidates is null) return model.FullSoftmaxLoss(user, target, titles, allVideos);
        var scores = model.ScoreCandidates(user, candidates, task, titles);
        return F.cross_entropy(scores, zeros(scores.shape[0], dtype: ScalarType.Int64));
    }

    /// <summary>The sharded path of <see cref="Backward"/>: slice inputs (phase 1, per shard), the batch-wide id–text
    /// loss and its gradient (phase 2, one history per worker), slice encoders, task losses and one backward each
    /// (phase 3, per shard), then the gradient sum.</summary>
    private sealed class ShardedStep(RecCom model, SrBatch batch, TaskKind task, Tensor? candidates, double idTextWeight, int shards)
    {
        private readonly long[] _start = new long[shards];
        private readonly long[] _size = new long[shards];
        private readonly List<Tensor>[] _owned = Enumerable.Range(0, shards).Select(_ => new List<Tensor>()).ToArray();

        public StepLosses Run()
        {
            var n = batch.Size;
            for (var s = 0; s < shards; s++)
            {
                _start[s] = n * s / shards;
                _size[s] = n * (s + 1) / shards - _start[s];
            }
            var parts = Enumerable.Range(0, shards).Select(Slice).ToArray();
            // With a run generator: one draw from it, as an unsharded forward makes (RecCom.Encode), so the id–text
            // negatives drawn next are the same; the slices' streams are seeded from that draw's stream.
            var root = model.Generator is null ? null : new Dropout.Seeds(Dropout.NextSeed(model.Generator));
            var seeds = Enumerable.Range(0, shards).Select(_ => new Dropout.Seeds(root?.Next() ?? Dropout.NextSeed())).ToArray();
            var parameters = model.parameters().Where(p => p.requires_grad).ToArray();
            var withIdText = WithIdText(model, idTextWeight);
            var inputs = new RecCom.Inputs[shards];
            var shared = SharedVideos.Of(model, task, candidates);
            var grads = new Tensor?[shards + 1][];
            var sharedGrads = new Tensor?[shards][];
            var taskLosses = new double[shards];
            try
            {
                ShardWorkers.Run(shards, s =>
                {
                    using var _ = seeds[s].Use();
                    using var shardScope = NewDisposeScope();
                    inputs[s] = model.EncodeInputs(parts[s], shared?.TableLeaf).Map(t => Keep(s, t)!);
                });

                double? idText = null;
                Tensor[]? idTextGrads = null;
                if (withIdText)
                {
                    // The two histories' losses are independent: drawn here in the unsharded order (video, then
                    // comment history), then computed and differentiated by two workers at once.
                    var draws = new[]
                    {
                        model.DrawNegatives(cat(inputs.Select(i => i.PhotoIds).ToArray())),
                        model.DrawNegatives(cat(inputs.Select(i => i.CommentIds).ToArray())),
                    };
                    var leaves = new[]
                    {
                        Leaf(inputs.Select(i => i.PhotoId!)), Leaf(inputs.Select(i => i.PhotoText!)),
                        Leaf(inputs.Select(i => i.CommentId!)), Leaf(inputs.Select(i => i.CommentText!)),
                    };
                    var losses = new Tensor[2];
                    idTextGrads = new Tensor[4];
                    ShardWorkers.Run(shards, s =>
                    {
                        if (s >= 2) return;
                        using var shardScope = NewDisposeScope();
                        var loss = model.PositionLoss(leaves[2 * s], leaves[2 * s + 1], draws[s]);
                        var g = TorchSharp.torch.autograd.grad([loss.mul(idTextWeight)], [leaves[2 * s], leaves[2 * s + 1]]);
                        losses[s] = Keep(s, loss.detach())!;
                        (idTextGrads[2 * s], idTextGrads[2 * s + 1]) = (Keep(s, g[0])!, Keep(s, g[1])!);
                    });
                    idText = losses[0].add(losses[1]).to(ScalarType.Float64).item<double>();
                }

                ShardWorkers.Run(shards, s =>
                {
                    using var _ = seeds[s].Use();
                    using var shardScope = NewDisposeScope();
                    var x = inputs[s];
                    var user = model.EncodeUser(x, parts[s].Target, task, shared?.TableLeaf);
                    var shardCandidates = candidates?.narrow(0, _start[s], _size[s]);
                    var loss = TaskLoss(model, user, parts[s].Target, task, shardCandidates, shared?.TableLeaf, shared?.VideosLeaf);
                    taskLosses[s] = loss.to(ScalarType.Float64).item<double>();
                    var outputs = new List<Tensor> { loss.mul((double)_size[s] / n) };
                    var upstream = new List<Tensor> { ones_like(outputs[0]) };
                    if (idTextGrads is not null)
                    {
                        outputs.AddRange([x.PhotoId!, x.PhotoText!, x.CommentId!, x.CommentText!]);
                        upstream.AddRange(idTextGrads.Select(g => g.narrow(0, _start[s], _size[s])));
                    }
                    var all = TorchSharp.torch.autograd.grad(outputs, [.. parameters, .. shared?.Leaves ?? []], upstream, allow_unused: true)
                        .Select(g => g.IsInvalid ? null : g.DetachFromDisposeScope()).ToArray();
                    _owned[s].AddRange(all.OfType<Tensor>());
                    grads[s] = all[..parameters.Length];
                    sharedGrads[s] = all[parameters.Length..];
                });

                grads[shards] = shared?.Backward(parameters, sharedGrads) ?? new Tensor?[parameters.Length];
                AddGradients(parameters, grads);
                var taskLoss = Enumerable.Range(0, shards).Sum(s => taskLosses[s] * _size[s] / n);
                return new StepLosses(taskLoss + idTextWeight * (idText ?? 0), taskLoss, idText);
            }
            finally
            {
                foreach (var list in _owned) foreach (var t in list) t.Dispose();
            }
        }

        private SrBatch Slice(int s) => new()
        {
            PhotoHistory = batch.PhotoHistory.narrow(0, _start[s], _size[s]),
            PhotoHistoryComment = batch.PhotoHistoryComment.narrow(0, _start[s], _size[s]),
            CommentHistoryPhoto = batch.CommentHistoryPhoto.narrow(0, _start[s], _size[s]),
            CommentHistoryComments = batch.CommentHistoryComments.Slice(_start[s] * batch.CommentHistoryPhoto.shape[1], _size[s] * batch.CommentHistoryPhoto.shape[1]),
            Target = batch.Target.narrow(0, _start[s], _size[s]),
        };

        /// <summary>A handle on <paramref name="t"/> that outlives the worker's dispose scope, disposed when the step
        /// ends (an alias: <paramref name="t"/> itself may belong to another scope, such as the batch's slices).</summary>
        private Tensor? Keep(int s, Tensor? t)
        {
            if (t is null) return null;
            var kept = t.alias().DetachFromDisposeScope();
            _owned[s].Add(kept);
            return kept;
        }

        /// <summary>The shards' [b, L, d] tensors as one detached [B, L, d] leaf of the batch-wide id–text loss.</summary>
        private static Tensor Leaf(IEnumerable<Tensor> parts) => cat(parts.Select(p => p.detach()).ToArray()).requires_grad_(true);

        /// <summary>
        /// The Rec full softmax's title table and the candidate vectors of all videos are the same for every slice, so
        /// the step computes them once (on the caller's libtorch threads) and hands the slices detached leaves; the
        /// leaves' gradients, summed over the slices, go back through llm_adapter, the id embeddings and gate in one
        /// backward. Per slice they would cost a [PhotoCount, TextDim] × [TextDim, d] GEMM and its weight gradient,
        /// and the normalisation of [PhotoCount, d] vectors both ways.
        /// </summary>
        private sealed record SharedVideos(Tensor? Table, Tensor? TableLeaf, Tensor Videos, Tensor VideosLeaf)
        {
            public static SharedVideos? Of(RecCom model, TaskKind task, Tensor? candidates)
            {
                if (task != TaskKind.Rec || candidates is not null) return null;
                var table = Titles(model, task, candidates);
                var videos = model.FullSoftmaxCandidates(table);
                return new SharedVideos(table, table?.detach().requires_grad_(true), videos, videos.detach().requires_grad_(true));
            }

            /// <summary>The leaves whose gradients a slice's backward returns after the parameters'.</summary>
            public Tensor[] Leaves => TableLeaf is null ? [VideosLeaf] : [VideosLeaf, TableLeaf];

            /// <summary>The parameters' gradients from the leaves' gradients of all slices (each slice's in
            /// <see cref="Leaves"/> order, null = unused), summed in shard order.</summary>
            public Tensor?[] Backward(Tensor[] parameters, Tensor?[][] leafGrads)
            {
                var roots = TableLeaf is null ? new[] { Videos } : [Videos, Table!];
                var outputs = new List<Tensor>();
                var upstream = new List<Tensor>();
                for (var i = 0; i < roots.Length; i++)
                {
                    Tensor? sum = null;
                    foreach (var g in leafGrads)
                        if (g[i] is { } gi) sum = sum is null ? gi : sum.add_(gi);
                    if (sum is null) continue;
                    outputs.Add(roots[i]);
                    upstream.Add(sum);
                }
                if (outputs.Count == 0) return new Tensor?[parameters.Length];
                return TorchSharp.torch.autograd.grad(outputs, parameters, upstream, allow_unused: true)
                    .Select(g => g.IsInvalid ? null : g).ToArray();
            }
        }

        /// <summary>Adds the slices' gradients in shard order into the first slice's (the step owns them all, so no
        /// copy), then into the parameters' <c>.grad</c>.</summary>
        private static void AddGradients(Tensor[] parameters, Tensor?[][] grads)
        {
            using var _ = no_grad();
            for (var j = 0; j < parameters.Length; j++)
            {
                Tensor? sum = null;
                foreach (var g in grads)
                {
                    if (g[j] is not { } gj) continue;
                    sum = sum is null ? gj : sum.add_(gj);
                }
                if (sum is null) continue;
                if (parameters[j].grad is { } existing) existing.add_(sum);
                else parameters[j].grad = sum;
            }
        }
    }
}
