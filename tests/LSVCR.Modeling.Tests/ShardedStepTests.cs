using LSVCR.Modeling.Cpu;
using LSVCR.Data;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

/// <summary><see cref="SrLoss.Backward"/> with data-parallel shards against one pass over the whole batch.</summary>
public abstract class ShardedStepTests
{
    /// <summary>The backend every model of this class is built with: each test runs once per backend.</summary>
    private protected abstract ModelBackend Backend { get; }

    private RecCom Model(RecComConfig? config = null, int seed = 3) => Tiny.Model(config, seed, Backend);

    /// <summary>Seven users with random histories (pads included, one empty comment history) over the tiny catalogue.</summary>
    private static SrBatch Users(int seed = 4)
    {
        using var g = new Generator((ulong)seed);
        const int n = 7;
        var comments = randint(0, Tiny.Comments, [n, 3, 2], generator: g);
        var commentPhotos = randint(1, Tiny.Photos, [n, 3], generator: g);
        commentPhotos[6] = zeros(3, dtype: ScalarType.Int64);
        comments[6] = zeros(3, 2, dtype: ScalarType.Int64);
        var photos = randint(1, Tiny.Photos, [n, 4], generator: g);
        photos[1, 3] = tensor(0L);
        photos[4, TensorIndex.Slice(2)] = tensor(0L);
        return new SrBatch
        {
            PhotoHistory = photos,
            PhotoHistoryComment = randint(0, Tiny.Comments, [n, 4], generator: g).mul(photos.ne(0)),
            CommentHistoryPhoto = commentPhotos,
            CommentHistoryComments = CommentBags.FromPadded(comments),
            Target = randint(1, Tiny.Photos, [n], generator: g),
        };
    }

    private static Tensor? Candidates(TaskKind task, bool sampled, SrBatch batch)
    {
        using var g = new Generator(8);
        if (task == TaskKind.CommRank) return randint(1, Tiny.Comments, [batch.Size, 4], generator: g);
        return sampled ? cat([batch.Target.unsqueeze(1), randint(1, Tiny.Photos, [batch.Size, 3], generator: g)], 1) : null;
    }

    private static (StepLosses Losses, Dictionary<string, Tensor> Grads) Step(RecCom model, SrBatch batch, TaskKind task,
        Tensor? candidates, double idText, int shards, int threads, int seed = 5)
    {
        var before = get_num_threads();
        set_num_threads(threads);
        try
        {
            manual_seed(seed);
            model.Generator = new Generator((ulong)seed + 6); // the step's draws: dropout seeds and id–text negatives
            model.zero_grad();
            var losses = SrLoss.Backward(model, batch, task, candidates, idText, shards);
            return (losses, model.named_parameters().Where(p => p.parameter.grad is not null)
                .ToDictionary(p => p.name, p => p.parameter.grad!.clone()));
        }
        finally { set_num_threads(before); }
    }

    /// <summary>Without dropout the sharded step is the same computation: each slice's task loss weighted by its
    /// size, the id–text loss over the whole batch with the same negatives. Losses and every gradient agree to float
    /// rounding, for uneven slices (7 users in 2 and 3), on the concurrent path (2 threads).</summary>
    [Theory]
    [InlineData(TaskKind.Rec, false, 2)]
    [InlineData(TaskKind.Rec, false, 3)]
    [InlineData(TaskKind.Rec, true, 3)]
    [InlineData(TaskKind.CommRank, false, 2)]
    [InlineData(TaskKind.CommRank, false, 3)]
    public void Sharded_step_equals_one_pass_over_the_batch_without_dropout(TaskKind task, bool sampled, int shards)
    {
        using var model = Model(Tiny.Config(c => c with { HiddenDropout = 0, AttentionDropout = 0 }));
        model.train();
        using var batch = Users();
        using var candidates = Candidates(task, sampled, batch);
        var (one, oneGrads) = Step(model, batch, task, candidates, 0.5, shards: 1, threads: 2);
        var (split, splitGrads) = Step(model, batch, task, candidates, 0.5, shards, threads: 2);

        Assert.NotNull(one.IdText);
        Assert.InRange(Math.Abs(split.Task - one.Task), 0, 1e-5 * Math.Abs(one.Task));
        Assert.InRange(Math.Abs(split.IdText!.Value - one.IdText!.Value), 0, 1e-5 * Math.Abs(one.IdText.Value));
        Assert.InRange(Math.Abs(split.Total - (split.Task + 0.5 * split.IdText.Value)), 0, 1e-9);
        Assert.Equal(oneGrads.Keys.Order(), splitGrads.Keys.Order());
        Assert.Contains("photo_embedding.weight", oneGrads.Keys);
        Assert.Contains("llm_adapter.weight", oneGrads.Keys);
        foreach (var (name, g) in oneGrads)
        {
            var (diff, scale) = (splitGrads[name].sub(g).abs().max().item<float>(), g.abs().max().item<float>());
            Assert.True(diff <= 1e-4f * scale + 1e-7f, $"{name}: max diff {diff} (largest gradient {scale})");
        }
    }

    /// <summary>The id–text gradient reaches the parameters only through the slices' backward: with the task loss's
    /// share removed (weight 0 vs 1 of the same step), the difference of the gradients is the id–text gradient, and it
    /// must match the unsharded one.</summary>
    [Fact]
    public void Sharded_id_text_gradient_equals_the_unsharded_one()
    {
        using var model = Model(Tiny.Config(c => c with { HiddenDropout = 0, AttentionDropout = 0 }));
        model.train();
        using var batch = Users();
        Dictionary<string, Tensor> IdTextOnly(int shards)
        {
            var (_, with) = Step(model, batch, TaskKind.Rec, null, 1.0, shards, threads: 2);
            var (_, without) = Step(model, batch, TaskKind.Rec, null, 0.0, shards, threads: 2);
            return with.ToDictionary(kv => kv.Key, kv => without.TryGetValue(kv.Key, out var w) ? kv.Value.sub(w) : kv.Value);
        }
        var one = IdTextOnly(1);
        var split = IdTextOnly(2);
        var embedding = one["photo_embedding.weight"];
        Assert.True(embedding.abs().max().item<float>() > 1e-4f, "the id–text loss moves the id embeddings");
        foreach (var name in new[] { "photo_embedding.weight", "llm_adapter.weight", "pc_merge.weight" })
        {
            var (diff, scale) = (split[name].sub(one[name]).abs().max().item<float>(), one[name].abs().max().item<float>());
            Assert.True(diff <= 1e-4f * scale + 1e-7f, $"{name}: max diff {diff} (largest {scale})");
        }
    }

    /// <summary>With dropout, the slices draw their masks from their own seed streams: a seeded step gives the same
    /// loss and bit-identical gradients whether the slices run one after another (1 thread) or at once (2 threads),
    /// and another seed gives other masks.</summary>
    [Fact]
    public void Sharded_step_with_dropout_is_reproducible_and_independent_of_the_thread_count()
    {
        using var model = Model();
        model.train();
        using var batch = Users();
        var (serial, serialGrads) = Step(model, batch, TaskKind.Rec, null, 0.1, shards: 2, threads: 1);
        var (concurrent, concurrentGrads) = Step(model, batch, TaskKind.Rec, null, 0.1, shards: 2, threads: 2);
        var (again, againGrads) = Step(model, batch, TaskKind.Rec, null, 0.1, shards: 2, threads: 2);
        var (other, _) = Step(model, batch, TaskKind.Rec, null, 0.1, shards: 2, threads: 2, seed: 6);

        Assert.Equal(serial.Total, concurrent.Total);
        Assert.Equal(concurrent.Total, again.Total);
        Assert.NotEqual(serial.Total, other.Total);
        foreach (var (name, g) in serialGrads)
        {
            Assert.True(g.equal(concurrentGrads[name]).all().item<bool>(), $"{name}: 1 vs 2 threads");
            Assert.True(g.equal(againGrads[name]).all().item<bool>(), $"{name}: rerun");
        }
    }

    /// <summary>A bad batch fails the step with the model's own error, whichever worker hit it, and the workers stay
    /// usable for the next step.</summary>
    [Fact]
    public void An_error_in_a_slice_is_rethrown_and_the_next_step_runs()
    {
        using var model = Model();
        model.train();
        using var batch = Users();
        batch.Target[5] = tensor(0L); // the second slice's: the pad video cannot be a Rec target
        var error = Assert.Throws<ArgumentException>(() => Step(model, batch, TaskKind.Rec, null, 0.1, shards: 2, threads: 2));
        Assert.Contains("pad video", error.Message);
        batch.Target[5] = tensor(2L);
        var (losses, grads) = Step(model, batch, TaskKind.Rec, null, 0.1, shards: 2, threads: 2);
        Assert.True(double.IsFinite(losses.Total) && losses.Total > 0);
        Assert.True(grads["photo_embedding.weight"].abs().sum().item<float>() > 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => SrLoss.Backward(model, batch, TaskKind.Rec, null, 0.1, shards: 0));
    }
}

public sealed class ShardedStepTestsPlain : ShardedStepTests
{
    private protected override ModelBackend Backend => ModelBackend.Plain;
}

[Trait("Category", "Kernels")]
public sealed class ShardedStepTestsCpuKernels : ShardedStepTests
{
    private protected override ModelBackend Backend => ModelBackend.CpuKernels;
}
