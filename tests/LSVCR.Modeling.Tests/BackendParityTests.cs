using LSVCR.Data;
using LSVCR.Modeling.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

/// <summary>
/// The plain modules and the CPU kernels are two implementations of one model: the same parameters, and from the same
/// weights and seed the same losses, gradients and scores up to float32 rounding — with dropout, because both draw
/// the same masks. Also the choice between them, and the plain model on another dtype.
/// </summary>
[Trait("Category", "Kernels")]
public sealed class BackendParityTests
{
    /// <summary>The same model twice: one per backend, the CPU one loaded with the plain one's weights.</summary>
    internal static (RecCom Plain, RecCom Cpu) Twins(RecComConfig config, Tensor photoText, Tensor commentText, int seed)
    {
        manual_seed(seed);
        var plain = new RecCom(config, photoText, commentText, ModelBackend.Plain);
        var cpu = new RecCom(config, photoText, commentText, ModelBackend.CpuKernels);
        cpu.load_state_dict(plain.state_dict());
        return (plain, cpu);
    }

    internal static (double Loss, Dictionary<string, Tensor> Grads) Step(RecCom model, SrBatch batch, TaskKind task, Tensor? candidates,
        int shards, int seed)
    {
        model.train();
        model.zero_grad();
        manual_seed(seed);
        var losses = SrLoss.Backward(model, batch, task, candidates, idTextWeight: 0.1, shards);
        return (losses.Total, model.named_parameters().Where(p => p.parameter.grad is not null)
            .ToDictionary(p => p.name, p => p.parameter.grad!.clone()));
    }

    /// <summary>Same loss (relative 1e-5) and every parameter's gradient within 1e-3 of its largest entry.</summary>
    internal static void AssertSameStep((double Loss, Dictionary<string, Tensor> Grads) plain, (double Loss, Dictionary<string, Tensor> Grads) cpu)
    {
        Assert.InRange(Math.Abs(cpu.Loss - plain.Loss), 0, 1e-5 * Math.Abs(plain.Loss));
        Assert.Equal(plain.Grads.Keys.Order(), cpu.Grads.Keys.Order());
        Assert.Contains(plain.Grads.Keys, k => k.Contains("feed_forward.linear_1"));
        foreach (var (name, g) in plain.Grads)
        {
            var (diff, scale) = (cpu.Grads[name].sub(g).abs().max().item<float>(), g.abs().max().item<float>());
            // Shift-invariant biases (softmax over keys, over positions) have a zero gradient up to rounding noise.
            if (name.EndsWith("key.bias") || name == "rec_att.attn.4.bias")
                Assert.True(scale < 1e-5f && cpu.Grads[name].abs().max().item<float>() < 1e-5f, $"{name}: {scale}, expected ≈ 0");
            else
                Assert.True(diff <= 1e-3f * scale + 1e-7f, $"{name}: max diff {diff} (largest gradient {scale})");
        }
    }

    [Fact]
    public void Selection_follows_device_dtype_instruction_sets_and_the_opt_out()
    {
        var expected = ModelBackend.CpuKernelsSupported ? ModelBackend.CpuKernels : ModelBackend.Plain;
        Assert.Same(expected, ModelBackend.Select(CPU, ScalarType.Float32));
        Assert.Same(ModelBackend.Plain, ModelBackend.Select(CPU, ScalarType.Float32, cpuKernels: false));
        Assert.Same(ModelBackend.Plain, ModelBackend.Select(CPU, ScalarType.Float64));
        Assert.Same(ModelBackend.Plain, ModelBackend.Select(CPU, ScalarType.BFloat16));
        Assert.Same(ModelBackend.Plain, ModelBackend.Select(new Device(DeviceType.CUDA), ScalarType.Float32));
        Assert.Equal(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported, ModelBackend.CpuKernelsSupported);
    }

    [Fact]
    public void Both_backends_hold_the_same_parameters_and_only_the_cpu_one_has_kernel_modules()
    {
        var (p, c) = Tiny.Texts();
        var (plain, cpu) = Twins(Tiny.Config(), p, c, seed: 3);
        using (plain)
        using (cpu)
        {
            Assert.Equal(plain.state_dict().Keys, cpu.state_dict().Keys);
            foreach (var (name, t) in plain.state_dict()) Assert.True(t.equal(cpu.state_dict()[name]).all().item<bool>(), name);
            var kernelModules = cpu.named_modules().Count(m => m.module is CpuMultiHeadAttention or CpuFeedForward or CpuAdditiveAttention);
            Assert.Equal(7 + 6 + 1, kernelModules); // MHA: 6 layers + comm_rank_att; FFN: 6 layers; rec_att
            Assert.DoesNotContain(plain.named_modules(), m => m.module.GetType().Namespace == typeof(CpuBackend).Namespace);
            Assert.Same(ModelBackend.Plain, plain.Backend);
            Assert.Same(ModelBackend.CpuKernels, cpu.Backend);
        }
    }

    /// <summary>Tiny sizes, dropout 0.3 in every layer and the id–text loss: the unsharded step and the sharded one
    /// as fine-tuning runs it, both tasks, Rec with the full softmax and sampled candidates.</summary>
    [Theory]
    [InlineData(TaskKind.Rec, false, 1)]
    [InlineData(TaskKind.Rec, false, 2)]
    [InlineData(TaskKind.Rec, true, 2)]
    [InlineData(TaskKind.CommRank, false, 1)]
    [InlineData(TaskKind.CommRank, false, 2)]
    public void Training_step_with_dropout_is_the_same_on_both_backends(TaskKind task, bool sampled, int shards)
    {
        var (p, c) = Tiny.Texts();
        var (plain, cpu) = Twins(Tiny.Config(), p, c, seed: 21);
        // Every history non-empty: a fully masked attention row softmaxes scores rounded next to −1e6 (ulp 0.0625),
        // where the written-out formula and the kernels round differently — both valid, not comparable.
        using var batch = Tiny.Batch(everyHistoryNonEmpty: true);
        using var candidates = task == TaskKind.CommRank ? tensor(new long[,] { { 1, 2, 3 }, { 8, 9, 0 }, { 4, 5, 6 } })
            : sampled ? tensor(new long[,] { { 5, 2, 3 }, { 1, 4, 6 }, { 3, 1, 2 } }) : null;
        using (plain)
        using (cpu)
            AssertSameStep(Step(plain, batch, task, candidates, shards, seed: 5), Step(cpu, batch, task, candidates, shards, seed: 5));
    }

    [Fact]
    public void Evaluation_scores_are_the_same_on_both_backends()
    {
        var (p, c) = Tiny.Texts();
        var (plain, cpu) = Twins(Tiny.Config(), p, c, seed: 8);
        using var batch = Tiny.Batch();
        using var comments = tensor(new long[,] { { 1, 2, 3 }, { 8, 9, 0 }, { 4, 5, 6 } });
        using (plain)
        using (cpu)
        using (no_grad())
        {
            plain.eval();
            cpu.eval();
            foreach (var task in new[] { TaskKind.Rec, TaskKind.CommRank })
            {
                var (up, _) = plain.Encode(batch, task);
                var (uc, _) = cpu.Encode(batch, task);
                Assert.True(uc.allclose(up, 1e-4, 1e-5), $"{task} user vectors: {uc.sub(up).abs().max().item<float>()}");
                var (sp, sc) = task == TaskKind.Rec
                    ? (plain.ScoreAllVideos(up), cpu.ScoreAllVideos(uc))
                    : (plain.ScoreCandidates(up, comments, task), cpu.ScoreCandidates(uc, comments, task));
                Assert.True(sc.allclose(sp, 1e-4, 1e-3), $"{task} scores: {sc.sub(sp).abs().max().item<float>()}");
            }
        }
    }

    /// <summary>The plain model is written for any dtype: moved to float64 it runs a training step on float64 (both
    /// tasks, id–text loss, dropout); a model built with the CPU kernels and then moved runs its plain forms (the
    /// kernels read float32 only) and gives the same numbers.</summary>
    [Fact]
    public void Plain_model_moved_to_float64_trains_and_the_cpu_model_falls_back_to_it()
    {
        var (p, c) = Tiny.Texts();
        var (plain, cpu) = Twins(Tiny.Config(), p, c, seed: 14);
        using var batch = Tiny.Batch();
        using var comments = tensor(new long[,] { { 1, 2, 3 }, { 8, 9, 0 }, { 4, 5, 6 } });
        using (plain)
        using (cpu)
        {
            plain.to(ScalarType.Float64);
            cpu.to(ScalarType.Float64);
            Assert.All(plain.parameters(), t => Assert.Equal(ScalarType.Float64, t.dtype));
            Assert.Same(ModelBackend.Plain, ModelBackend.Select(CPU, ScalarType.Float64));
            foreach (var (task, candidates) in new[] { (TaskKind.Rec, (Tensor?)null), (TaskKind.CommRank, comments) })
            {
                var a = Step(plain, batch, task, candidates, shards: 1, seed: 4);
                Assert.True(double.IsFinite(a.Loss) && a.Loss > 0, $"{task}: loss {a.Loss}");
                Assert.All(a.Grads.Values, g => Assert.Equal(ScalarType.Float64, g.dtype));
                Assert.Contains(a.Grads.Values, g => g.abs().sum().item<double>() > 0);
                var b = Step(cpu, batch, task, candidates, shards: 1, seed: 4);
                Assert.Equal(a.Loss, b.Loss, 12);
                foreach (var (name, g) in a.Grads) Assert.True(b.Grads[name].allclose(g, 1e-9, 1e-12), name);
            }
        }
    }
}

/// <summary>The parity step at the reference's default size: part of the kernel runs on this machine and on the AVX2
/// path; left out of the scalar-fallback run, where emulated vectors make it take ≈ 12 minutes (the smaller parity
/// tests cover the same code there).</summary>
[Trait("Category", "KernelsDefaultSize")]
public sealed class DefaultSizeParityTests
{
    /// <summary>The reference's default model (MODEL.md §2: d 64, 2 heads, 2 + 1 layers, inner 256, E 256, dropout
    /// 0.3, histories of 50) on a realistic Rec batch — 256 users, full softmax over 5,000 videos, id–text loss,
    /// two shards as fine-tuning runs it: where the kernels' blocking, chunking and vector paths all take part.</summary>
    [Fact]
    public void Default_size_training_step_is_the_same_on_both_backends()
    {
        var bench = new TrainBenchOptions { Batch = 256, Videos = 5_000 };
        var config = new RecComConfig { PhotoCount = bench.Videos + 1, CommentCount = bench.Videos * bench.CommentsPerVideo + 1 };
        Assert.Equal((64, 2, 2, 1, 256, 256, 0.3, 50), (config.Hidden, config.Heads, config.EncoderLayers, config.MixLayers, config.Inner,
            config.TextDim, config.HiddenDropout, config.MaxPosition));
        using var generator = new Generator(31);
        using var photoText = randn(config.PhotoCount, config.TextDim, generator: generator);
        using var commentText = randn(config.CommentCount, config.TextDim, generator: generator);
        using var batch = TrainStepBench.RandomBatch(bench, config, generator);
        var (plain, cpu) = BackendParityTests.Twins(config, photoText, commentText, seed: 32);
        using (plain)
        using (cpu)
            BackendParityTests.AssertSameStep(BackendParityTests.Step(plain, batch, TaskKind.Rec, null, SrLoss.DefaultShards, seed: 33),
                BackendParityTests.Step(cpu, batch, TaskKind.Rec, null, SrLoss.DefaultShards, seed: 33));
    }
}
