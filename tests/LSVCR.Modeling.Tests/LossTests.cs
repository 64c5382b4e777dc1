using LSVCR.Modeling.Cpu;
using LSVCR.Data;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

public abstract class LossTests
{
    /// <summary>The backend every model of this class is built with: each test runs once per backend.</summary>
    private protected abstract ModelBackend Backend { get; }

    private RecCom Model(RecComConfig? config = null, int seed = 3) => Tiny.Model(config, seed, Backend);

    [Theory]
    [InlineData(1000, 99)]  // 5 full blocks + a borrowing block of 5 owners
    [InlineData(199, 99)]   // exactly one block
    [InlineData(40, 99)]    // fewer positions than 2k+1
    [InlineData(23, 5)]     // 2 blocks of 11 + 1 borrowed
    public void Sampling_never_uses_self_keeps_the_two_negative_sets_disjoint_and_covers_each_position_once(int n, int k)
    {
        using var g = new Generator(7);
        using var layout = IdTextLoss.Sample(n, k, g);
        var s = layout.BlockSize;
        Assert.Equal(Math.Min(n, 2 * k + 1), s);
        var index = layout.Index.data<long>().ToArray();
        var owner = layout.Owner.data<bool>().ToArray();
        var blocks = index.Length / s;
        var owned = new int[n];
        for (var b = 0; b < blocks; b++)
        {
            var members = index.Skip(b * s).Take(s).ToArray();
            Assert.Equal(s, members.Distinct().Count());
            for (var i = 0; i < s; i++)
            {
                if (!owner[b * s + i]) continue;
                var self = members[i];
                owned[self]++;
                var first = Enumerable.Range(1, layout.K1).Select(o => members[(i + o) % s]).ToHashSet();
                var second = Enumerable.Range(layout.K1 + 1, s - 1 - layout.K1).Select(o => members[(i + o) % s]).ToHashSet();
                Assert.DoesNotContain(self, first);
                Assert.DoesNotContain(self, second);
                Assert.Empty(first.Intersect(second));
                if (n >= 2 * k + 1)
                {
                    Assert.Equal(k, first.Count);
                    Assert.Equal(k, second.Count);
                }
                else
                {
                    Assert.Equal((n - 1) / 2, first.Count);
                    Assert.Equal(n - 1 - (n - 1) / 2, second.Count);
                }
            }
        }
        Assert.All(owned, c => Assert.Equal(1, c));
    }

    [Fact]
    public void Sampling_gives_every_other_position_the_same_chance_to_be_a_negative()
    {
        // Position 0's id→text negatives over many draws: uniform over the 29 others (each 5/29 of draws).
        const int n = 30, k = 5, draws = 3000;
        using var g = new Generator(3);
        var counts = new int[n];
        for (var t = 0; t < draws; t++)
        {
            using var layout = IdTextLoss.Sample(n, k, g);
            var s = layout.BlockSize;
            var index = layout.Index.data<long>().ToArray();
            var owner = layout.Owner.data<bool>().ToArray();
            for (var slot = 0; slot < index.Length; slot++)
            {
                if (index[slot] != 0 || !owner[slot]) continue;
                var (b, i) = (slot / s, slot % s);
                for (var o = 1; o <= layout.K1; o++) counts[index[b * s + (i + o) % s]]++;
            }
        }
        Assert.Equal(0, counts[0]);
        var expected = draws * k / 29.0; // ≈ 517
        Assert.All(counts.Skip(1), c => Assert.InRange(c, expected * 0.8, expected * 1.2));
    }

    [Fact]
    public void Id_text_loss_matches_the_hand_computed_value()
    {
        // Orthonormal ids, text = id: positive cosine 1, every negative 0. With T = 1 each direction's loss is
        // log(e¹ + e⁰) − 1 = log(1 + e⁻¹) = 0.31326, whichever negatives are drawn.
        using var id = eye(3);
        using var loss = IdTextLoss.Compute(id * 2f, id, 99, 1.0);
        Assert.Equal(Math.Log(1 + Math.Exp(-1)), loss.item<float>(), 1e-5);

        // N = 5, k = 1 (blocks of 3 + one borrowed block): 2 negatives per position, 1 per side.
        using var five = eye(5);
        using var l5 = IdTextLoss.Compute(five, five, 1, 0.5);
        Assert.Equal(Math.Log(1 + Math.Exp(-2)), l5.item<float>(), 1e-5);
    }

    /// <summary>The id–text block loss written with libtorch ops over whole [S, S] blocks: each direction's visible
    /// logits selected by an additive band mask, −log_softmax at the diagonal.</summary>
    private static Tensor BandReference(Tensor id, Tensor text, IdTextLoss.Layout layout, double t)
    {
        var x = F.normalize(id, dim: -1).div(t);
        var y = F.normalize(text, dim: -1);
        var (s, blocks) = (layout.BlockSize, layout.Index.shape[0]);
        var xb = x.index_select(0, layout.Index.view(-1)).view(blocks, s, -1);
        var yb = y.index_select(0, layout.Index.view(-1)).view(blocks, s, -1);
        var g = bmm(xb, yb.transpose(1, 2));
        var i = arange(s);
        var delta = i.unsqueeze(0).sub(i.unsqueeze(1)).remainder(s); // (j − i) mod S
        Tensor Band(long last) => delta.le(last).to(ScalarType.Float32).sub(1f).mul(1e6f);
        var l1 = g.add(Band(layout.K1)).log_softmax(2).diagonal(0, 1, 2);
        var l2 = g.add(Band(s - 1 - layout.K1)).log_softmax(1).diagonal(0, 1, 2);
        return l1.add(l2).mul(layout.Owner.to(ScalarType.Float32)).sum().div(-2.0 * id.shape[0]);
    }

    [Theory]
    [InlineData(450, 16)] // two full blocks of 199 and a borrowed one
    [InlineData(450, 64)] // the model's width: other GEMM tiles
    [InlineData(37, 16)]  // one block, 18 + 18 negatives
    [InlineData(38, 16)]  // one block, 18 id→text + 19 text→id negatives
    [InlineData(2, 16)]   // one block of two: no id→text negative, one text→id negative
    [InlineData(3, 5)]
    public void Id_text_loss_and_gradients_match_the_band_masked_block_formula(int n, int dim)
    {
        manual_seed(6);
        using var id = randn(n, dim).requires_grad_(true);
        using var text = randn(n, dim).requires_grad_(true);
        using var g1 = new Generator(3);
        using var fast = IdTextLoss.Compute(id, text, RecCom.IdTextNegatives, 0.07, g1);
        fast.backward();
        using var dId = id.grad!.clone();
        using var dText = text.grad!.clone();
        id.grad!.zero_();
        text.grad!.zero_();

        using var g2 = new Generator(3);
        using var layout = IdTextLoss.Sample(n, RecCom.IdTextNegatives, g2);
        using var reference = BandReference(id, text, layout, 0.07);
        reference.backward();
        Assert.Equal(reference.item<float>(), fast.item<float>(), 1e-4);
        Assert.True(dId.allclose(id.grad!, 1e-3, 1e-6), $"d id max diff {dId.sub(id.grad!).abs().max().item<float>()}");
        Assert.True(dText.allclose(text.grad!, 1e-3, 1e-6), $"d text max diff {dText.sub(text.grad!).abs().max().item<float>()}");
    }

    [Fact]
    public void Id_text_loss_over_selected_rows_equals_the_loss_of_those_rows_and_leaves_the_others_without_gradient()
    {
        manual_seed(8);
        using var id = randn(300, 24).requires_grad_(true);
        using var text = randn(300, 24).requires_grad_(true);
        using var rows = arange(0, 300, 3, dtype: ScalarType.Int64); // 100 of the 300 rows
        using var g1 = new Generator(4);
        using var selected = IdTextLoss.Compute(id, text, 20, 0.1, g1, rows);
        selected.backward();

        using var idSub = id.detach().index_select(0, rows).requires_grad_(true);
        using var textSub = text.detach().index_select(0, rows).requires_grad_(true);
        using var g2 = new Generator(4);
        using var direct = IdTextLoss.Compute(idSub, textSub, 20, 0.1, g2);
        direct.backward();

        Assert.Equal(direct.item<float>(), selected.item<float>(), 1e-5);
        Assert.True(id.grad!.index_select(0, rows).allclose(idSub.grad!, 1e-5, 1e-7));
        Assert.True(text.grad!.index_select(0, rows).allclose(textSub.grad!, 1e-5, 1e-7));
        using var others = arange(300, dtype: ScalarType.Int64).remainder(3).ne(0);
        Assert.Equal(0f, id.grad!.index_select(0, others.nonzero().view(-1)).abs().sum().item<float>());
        Assert.True(idSub.grad!.abs().sum().item<float>() > 0);
        // A zero row (norm below eps) gets the clamped-norm gradient, never NaN.
        using var withZero = id.detach().clone();
        withZero[3].zero_();
        withZero.requires_grad_(true);
        using var g3 = new Generator(4);
        using var zeroLoss = IdTextLoss.Compute(withZero, text.detach(), 20, 0.1, g3, rows);
        zeroLoss.backward();
        Assert.False(withZero.grad!.isnan().any().item<bool>());
    }

    [Fact]
    public void Id_text_loss_equals_the_per_position_cross_entropy_on_the_drawn_negatives()
    {
        const int n = 450, k = 99;
        const double t = 0.07;
        manual_seed(5);
        var id = randn(n, 16);
        var text = randn(n, 16);
        using var g1 = new Generator(9);
        var fast = IdTextLoss.Compute(id, text, k, t, g1).item<float>();

        using var g2 = new Generator(9);
        using var layout = IdTextLoss.Sample(n, k, g2);
        var x = F.normalize(id, dim: -1);
        var y = F.normalize(text, dim: -1);
        var s = layout.BlockSize;
        var index = layout.Index.data<long>().ToArray();
        var owner = layout.Owner.data<bool>().ToArray();
        double total = 0;
        for (var slot = 0; slot < index.Length; slot++)
        {
            if (!owner[slot]) continue;
            var (b, i) = (slot / s, slot % s);
            var p = index[slot];
            var negY = Enumerable.Range(1, k).Select(o => index[b * s + (i + o) % s]).ToArray();
            var negX = Enumerable.Range(k + 1, k).Select(o => index[b * s + (i + o) % s]).ToArray();
            double Ce(Tensor q, Tensor pos, Tensor negs)
            {
                var logits = cat([pos.unsqueeze(0), negs]).matmul(q).div(t);
                return -logits.log_softmax(0)[0].item<float>();
            }
            total += (Ce(x[p], y[p], y.index_select(0, tensor(negY))) + Ce(y[p], x[p], x.index_select(0, tensor(negX)))) / 2;
        }
        Assert.Equal(total / n, fast, 1e-3);
    }

    [Fact]
    public void Full_softmax_loss_is_cross_entropy_over_all_videos_plus_weighted_id_text()
    {
        using var model = Model();
        model.train();
        using var batch = Tiny.Batch();
        manual_seed(21);
        var (total, task, idText) = SrLoss.Compute(model, batch, TaskKind.Rec, null, 0.1);
        Assert.NotNull(idText);
        Assert.True(idText!.item<float>() > 0);
        Assert.Equal(task.item<float>() + 0.1f * idText.item<float>(), total.item<float>(), 1e-5f);

        model.eval();
        var (total2, task2, idText2) = SrLoss.Compute(model, batch, TaskKind.Rec, null, 0.1);
        Assert.Null(idText2);
        var scores = model.ScoreAllVideos(model.Encode(batch, TaskKind.Rec).User);
        var expected = -scores.log_softmax(1).gather(1, batch.Target.unsqueeze(1)).mean().item<float>();
        Assert.Equal(expected, task2.item<float>(), 1e-4f);
        Assert.Equal(task2.item<float>(), total2.item<float>());
    }

    [Fact]
    public void Full_softmax_gradients_equal_the_masked_all_video_scores_and_pad_targets_are_rejected()
    {
        using var model = Model(Tiny.Config(c => c with { HiddenDropout = 0, AttentionDropout = 0 }));
        model.train();
        using var batch = Tiny.Batch();
        var (_, task, _) = SrLoss.Compute(model, batch, TaskKind.Rec, null, 0);
        task.backward();
        var fast = model.named_parameters().Select(p => (p.name, g: p.parameter.grad?.clone())).ToList();
        model.zero_grad();
        var scores = model.ScoreAllVideos(model.Encode(batch, TaskKind.Rec).User);
        nn.functional.cross_entropy(scores, batch.Target).backward();
        foreach (var (name, g) in fast)
        {
            var reference = model.named_parameters().Single(p => p.name == name).parameter.grad;
            Assert.Equal(g is null, reference is null);
            if (g is not null) Assert.True(g.allclose(reference!, 1e-4, 1e-6), name);
        }

        using var padTarget = new SrBatch
        {
            PhotoHistory = batch.PhotoHistory, PhotoHistoryComment = batch.PhotoHistoryComment,
            CommentHistoryPhoto = batch.CommentHistoryPhoto, CommentHistoryComments = batch.CommentHistoryComments,
            Target = tensor(new long[] { 2, 0, 1 }),
        };
        var e = Assert.Throws<ArgumentException>(() => SrLoss.Compute(model, padTarget, TaskKind.Rec, null, 0));
        Assert.Contains("pad video", e.Message);
    }

    [Fact]
    public void Sampled_and_comment_losses_use_label_zero()
    {
        using var model = Model();
        model.eval();
        using var batch = Tiny.Batch();
        using var cands = tensor(new long[,] { { 5, 1, 2 }, { 1, 3, 4 }, { 3, 6, 0 } });
        var (_, rec, _) = SrLoss.Compute(model, batch, TaskKind.Rec, cands, 0.1);
        var s = model.ScoreCandidates(model.Encode(batch, TaskKind.Rec).User, cands, TaskKind.Rec);
        Assert.Equal(-s.log_softmax(1)[.., 0].mean().item<float>(), rec.item<float>(), 1e-4f);

        using var comments = tensor(new long[,] { { 2, 1, 3 }, { 9, 8, 0 }, { 4, 5, 6 } });
        var (_, comm, _) = SrLoss.Compute(model, batch, TaskKind.CommRank, comments, 0.1);
        var cs = model.ScoreCandidates(model.Encode(batch, TaskKind.CommRank).User, comments, TaskKind.CommRank);
        Assert.Equal(-cs.log_softmax(1)[.., 0].mean().item<float>(), comm.item<float>(), 1e-4f);
        Assert.Throws<ArgumentException>(() => SrLoss.Compute(model, batch, TaskKind.CommRank, null, 0.1));
    }

    [Fact]
    public void Training_steps_reduce_the_loss_and_reach_every_parameter()
    {
        using var model = Model(Tiny.Config(c => c with { HiddenDropout = 0, AttentionDropout = 0 }));
        model.train();
        using var batch = Tiny.Batch();
        using var opt = optim.AdamW(model.parameters(), 0.01);
        float first = 0, last = 0;
        for (var step = 0; step < 30; step++)
        {
            opt.zero_grad();
            var (total, _, _) = SrLoss.Compute(model, batch, TaskKind.Rec, null, 0.1);
            total.backward();
            if (step == 0)
            {
                // Softmax is shift-invariant, so biases that add the same value to every score (attention key
                // biases, rec_att's last bias) have a mathematically zero gradient: only rounding noise remains.
                var silent = model.named_parameters()
                    .Where(p => !p.name.EndsWith("key.bias") && p.name != "rec_att.attn.4.bias")
                    .Where(p => p.parameter.grad is null || p.parameter.grad.abs().sum().item<float>() == 0)
                    .Select(p => p.name).ToList();
                // Rec does not use the CommRank head or the comment-history mix/projection output.
                Assert.All(silent, name => Assert.True(name.StartsWith("comm_rank_att") || name.StartsWith("c_linear") || name.StartsWith("chis_mix_layer"), name));
                first = total.item<float>();
            }
            last = total.item<float>();
            opt.step();
        }
        Assert.True(last < first * 0.5, $"loss {first} → {last}");
    }

    /// <summary>End to end, without dropout: in train() the step runs the fused nodes (attention and FFN sublayers),
    /// in eval() the plain libtorch modules (and libtorch's attention kernel); autograd runs in both. Same model,
    /// so the losses and every parameter gradient must agree to float32 rounding — this checks the nodes' wiring in
    /// the model (self vs cross attention, the k|v order, masks, chunking), the node tests check them one by one
    /// (dropout included).</summary>
    [Theory]
    [InlineData(TaskKind.Rec)]
    [InlineData(TaskKind.CommRank)]
    public void Fused_training_step_equals_the_plain_modules_without_dropout(TaskKind task)
    {
        using var model = Model(Tiny.Config(c => c with { HiddenDropout = 0, AttentionDropout = 0 }));
        // Every history non-empty: a fully masked attention row softmaxes scores rounded next to −1e6 (ulp 0.0625),
        // where the written-out formula and libtorch's kernel round differently — both valid, not comparable.
        using var batch = Tiny.Batch(everyHistoryNonEmpty: true);
        using var candidates = task == TaskKind.CommRank ? tensor(new long[,] { { 1, 2, 3 }, { 8, 9, 0 }, { 4, 5, 6 } }) : null;
        (float Loss, Dictionary<string, Tensor> Grads) Step(bool training)
        {
            model.train(training);
            model.zero_grad();
            var (total, _, _) = SrLoss.Compute(model, batch, task, candidates, 0);
            total.backward();
            return (total.item<float>(),
                model.named_parameters().Where(p => p.parameter.grad is not null).ToDictionary(p => p.name, p => p.parameter.grad!.clone()));
        }
        var (fusedLoss, fused) = Step(true);
        var (plainLoss, plain) = Step(false);
        Assert.InRange(Math.Abs(fusedLoss - plainLoss), 0, 1e-5 * Math.Abs(plainLoss));
        Assert.Equal(plain.Keys.Order(), fused.Keys.Order());
        Assert.Contains(plain.Keys, k => k.Contains("feed_forward.linear_1"));
        foreach (var (name, g) in plain)
        {
            var (diff, scale) = (fused[name].sub(g).abs().max().item<float>(), g.abs().max().item<float>());
            // Shift-invariant biases (see above) have a zero gradient up to rounding noise, in both forms.
            if (name.EndsWith("key.bias") || name == "rec_att.attn.4.bias")
                Assert.True(scale < 1e-6f && fused[name].abs().max().item<float>() < 1e-6f, $"{name}: {scale}, expected ≈ 0");
            else
                Assert.True(diff <= 1e-3f * scale + 1e-7f, $"{name}: max diff {diff} (largest gradient {scale})");
        }
    }

    [Fact]
    public void Dropout_drops_the_configured_fraction_scales_the_rest_and_is_identity_in_eval()
    {
        manual_seed(17);
        using var x = ones(400_000);
        using var y = Dropout.Apply(x, 0.3, training: true);
        var values = y.data<float>().ToArray();
        Assert.All(values.Distinct(), v => Assert.True(v == 0f || Math.Abs(v - 1 / 0.7f) < 1e-6, $"{v}"));
        var dropped = values.Count(v => v == 0) / (double)values.Length;
        Assert.InRange(dropped, 0.3 - 0.003, 0.3 + 0.003); // ±4 standard deviations
        Assert.Equal(1.0, values.Average(), 0.01);          // inverted dropout keeps the mean
        using var e = Dropout.Apply(x, 0.3, training: false);
        Assert.True(e.allclose(x, 0, 0));
        Assert.Equal(0f, Dropout.Apply(x, 1.0, true).abs().sum().item<float>());
    }

    [Fact]
    public void Dropout_mask_follows_the_torch_seed_not_the_thread_count()
    {
        var threads = get_num_threads();
        try
        {
            set_num_threads(1);
            manual_seed(5);
            using var one = Dropout.KeepMask([3, 70_001], 0.3); // odd size: a partial last 4-lane word
            set_num_threads(2);
            manual_seed(5);
            using var two = Dropout.KeepMask([3, 70_001], 0.3);
            using var next = Dropout.KeepMask([3, 70_001], 0.3);
            Assert.True(one.equal(two).all().item<bool>(), "same seed, other thread count → same mask");
            Assert.False(two.equal(next).all().item<bool>(), "successive calls draw new seeds");
            // Neighbouring elements come from different 16-bit lanes of one draw: they must be independent.
            var m = two.view(-1).data<float>().ToArray().Select(v => v > 0 ? 1.0 : 0.0).ToArray();
            var both = Enumerable.Range(0, m.Length - 1).Average(i => m[i] * m[i + 1]);
            Assert.InRange(both, 0.7 * 0.7 - 0.006, 0.7 * 0.7 + 0.006);
        }
        finally { set_num_threads(threads); }
    }

    /// <summary>Every vector width of the generator (32 and 16 elements per step, the scalar tail) gives element
    /// 4w + j = (lane j of Mix(seed + (w + 1)·golden) ≥ threshold) · scale, from any first word and for any count.</summary>
    [Theory]
    [InlineData(0L, 3L)]
    [InlineData(0L, 16L)]
    [InlineData(5L, 33L)]
    [InlineData(7L, 100L)]
    [InlineData(123L, 131L)]
    [InlineData(3L, 50L)]     // 32, then 16, then the tail
    [InlineData(1L, 1016L)]
    public unsafe void Dropout_generator_matches_its_scalar_definition(long firstWord, long count)
    {
        const ulong seed = 0x1234_5678_9ABC_DEF0UL;
        var threshold = Dropout.Threshold(0.3);
        var scale = Dropout.KeepScale(0.3);
        var src = Enumerable.Range(0, (int)count).Select(i => 1f + i * 0.25f).ToArray();
        var (plain, times) = (new float[count], new float[count]);
        fixed (float* d = plain, t = times, sp = src)
        {
            Dropout.WriteKeep(seed, firstWord, count, threshold, scale, d);
            Dropout.WriteKeep(seed, firstWord, count, threshold, scale, t, sp);
        }
        for (var i = 0L; i < count; i++)
        {
            var z = Dropout.Mix(seed + (ulong)(firstWord + i / 4 + 1) * Dropout.Golden);
            var keep = (ushort)(z >> (int)(16 * (i % 4))) >= threshold ? scale : 0f;
            Assert.True(keep == plain[i], $"element {i}: {plain[i]}, expected {keep}");
            Assert.True(keep * src[i] == times[i], $"element {i} times src: {times[i]}, expected {keep * src[i]}");
        }
        Assert.Contains(0f, plain);
    }

    [Fact]
    public void Dropout_gradient_is_the_same_mask()
    {
        manual_seed(3);
        using var x = randn(1000, requires_grad: true);
        using var y = Dropout.Apply(x, 0.3, training: true);
        y.sum().backward();
        using var expected = y.detach().div(x.detach());
        Assert.True(x.grad!.allclose(expected, 1e-5, 1e-6));
        manual_seed(3);
        using var again = randn(1000);
        using var mask = Dropout.KeepMask([1000], 0.3); // the same draw: forward, backward and KeepMask agree
        Assert.True(x.grad!.equal(mask).all().item<bool>());
    }
}

public class RuntimeTuningTests
{
    [Fact]
    public void Passive_OpenMP_waiting_is_refused_once_libtorch_is_loaded()
    {
        using var t = torch.ones(2).add(1); // libtorch (and its libgomp) is loaded from here on
        Assert.False(OpenMp.PreferPassiveWaiting());
        Assert.Null(Environment.GetEnvironmentVariable("OMP_WAIT_POLICY"));
    }
}

public sealed class LossTestsPlain : LossTests
{
    private protected override ModelBackend Backend => ModelBackend.Plain;
}

[Trait("Category", "Kernels")]
public sealed class LossTestsCpuKernels : LossTests
{
    private protected override ModelBackend Backend => ModelBackend.CpuKernels;
}
