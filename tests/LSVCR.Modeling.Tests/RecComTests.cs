using LSVCR.Modeling.Cpu;
using LSVCR.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

public abstract class RecComTests
{
    /// <summary>The backend every model of this class is built with: each test runs once per backend.</summary>
    private protected abstract ModelBackend Backend { get; }

    private RecCom Model(RecComConfig? config = null, int seed = 3) => Tiny.Model(config, seed, Backend);

    private static readonly string[] LayerKeys =
    [
        "multi_head_attention.query.weight", "multi_head_attention.query.bias",
        "multi_head_attention.key.weight", "multi_head_attention.key.bias",
        "multi_head_attention.value.weight", "multi_head_attention.value.bias",
        "multi_head_attention.out_linear.weight", "multi_head_attention.out_linear.bias",
        "multi_head_attention.LayerNorm.weight", "multi_head_attention.LayerNorm.bias",
        "feed_forward.linear_1.weight", "feed_forward.linear_1.bias",
        "feed_forward.linear_2.weight", "feed_forward.linear_2.bias",
        "feed_forward.LayerNorm.weight", "feed_forward.LayerNorm.bias",
    ];

    internal static IEnumerable<string> ReferenceKeys(bool ids = true)
    {
        if (ids) { yield return "photo_embedding.weight"; yield return "gate"; }
        foreach (var k in new[]
                 {
                     "pposition_embedding.weight", "cposition_embedding.weight", "photo_layernorm.weight", "photo_layernorm.bias",
                     "comment_layernorm.weight", "comment_layernorm.bias", "llm_adapter.weight", "pc_merge.weight", "pc_merge.bias",
                     "p_linear.weight", "p_linear.bias", "c_linear.weight", "c_linear.bias",
                     "comm_rank_att.query.weight", "comm_rank_att.query.bias", "comm_rank_att.key.weight", "comm_rank_att.key.bias",
                     "comm_rank_att.value.weight", "comm_rank_att.value.bias", "comm_rank_att.out_linear.weight",
                     "comm_rank_att.out_linear.bias", "comm_rank_att.LayerNorm.weight", "comm_rank_att.LayerNorm.bias",
                     "rec_att.attn.0.weight", "rec_att.attn.0.bias", "rec_att.attn.2.weight", "rec_att.attn.2.bias",
                     "rec_att.attn.4.weight", "rec_att.attn.4.bias",
                 })
            yield return k;
        foreach (var (stack, layers) in new[] { ("phis_encoder", 2), ("chis_encoder", 2), ("phis_mix_layer", 1), ("chis_mix_layer", 1) })
            for (var i = 0; i < layers; i++)
                foreach (var k in LayerKeys) yield return $"{stack}.layer.{i}.{k}";
    }

    [Fact]
    public void State_dict_keys_are_the_reference_names_and_exclude_the_text_tables()
    {
        using var model = Model();
        var keys = model.state_dict().Keys.ToHashSet();
        Assert.Equal(ReferenceKeys().OrderBy(k => k), keys.OrderBy(k => k));
        Assert.Equal(new long[] { Tiny.Photos, 8 }, model.state_dict()["photo_embedding.weight"].shape);
        Assert.Equal(new long[] { 8, Tiny.TextDim }, model.state_dict()["llm_adapter.weight"].shape);
        Assert.Equal(new long[] { 16, 8 }, model.state_dict()["rec_att.attn.0.weight"].shape);
        Assert.Empty(model.state_dict()["gate"].shape);
    }

    [Fact]
    public void Stage1_form_has_no_photo_embedding_or_gate()
    {
        using var model = Model(Tiny.Config(c => c with { UseIds = false }));
        Assert.Equal(ReferenceKeys(ids: false).OrderBy(k => k), model.state_dict().Keys.OrderBy(k => k));
    }

    [Fact]
    public void Init_follows_the_reference()
    {
        using var model = Model(Tiny.Config(c => c with { PhotoCount = 2001 }), seed: 5);
        var sd = model.state_dict();
        Assert.Equal(1f, sd["gate"].item<float>());
        var emb = sd["photo_embedding.weight"];
        Assert.Equal(0.02, emb.narrow(0, 1, 2000).std().item<float>(), 0.002);
        Assert.Equal(0f, emb[0].abs().sum().item<float>());
        Assert.Equal(0f, sd["pc_merge.bias"].abs().sum().item<float>());
        Assert.Equal(8f, sd["photo_layernorm.weight"].sum().item<float>());
    }

    /// <summary>Step 1 (MODEL.md §2) written out: x = pc_merge(cat[llm_adapter(title), llm_adapter(comment text)]),
    /// the comment text of a comment-history entry being the mean over its non-pad comments (0 for none). The model
    /// folds pc_merge's comment half into llm_adapter and may read the titles from the adapted title table.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Step1_text_vectors_are_pc_merge_of_adapted_title_and_comment_text(bool titleTable)
    {
        var (photoText, commentText) = Tiny.Texts();
        using var model = Model();
        using var batch = Tiny.Batch();
        var sd = model.state_dict();
        using (no_grad()) sd["pc_merge.bias"].copy_(randn(8));
        var (adapter, merge, bias) = (sd["llm_adapter.weight"], sd["pc_merge.weight"], sd["pc_merge.bias"]);
        Tensor Expected(Tensor ids, Tensor comments)
        {
            var title = photoText.index_select(0, ids.reshape(-1)).matmul(adapter.t());
            // A video-history entry has one comment id, taken as it is (a pad id reads the pad row); a comment-history
            // entry has several, averaged over the non-pad ones.
            var text = comments.dim() == 2
                ? commentText.index_select(0, comments.reshape(-1))
                : Mean(comments);
            return cat([title, text.matmul(adapter.t())], -1).matmul(merge.t()).add(bias).view(ids.shape[0], ids.shape[1], -1);
        }
        Tensor Mean(Tensor comments)
        {
            var present = comments.ne(0).unsqueeze(-1).to(ScalarType.Float32);
            return commentText.index_select(0, comments.reshape(-1)).view(comments.shape[0], comments.shape[1], comments.shape[2], -1)
                .mul(present).sum(2).div(present.sum(2).clamp_min(1)).reshape(-1, Tiny.TextDim);
        }
        using var _ = no_grad();
        var inputs = model.EncodeInputs(batch, titleTable ? model.AdaptedTitles() : null);
        var expectedPhoto = Expected(batch.PhotoHistory, batch.PhotoHistoryComment);
        var expectedComment = Expected(batch.CommentHistoryPhoto, Tiny.PaddedComments());
        Assert.True(inputs.PhotoText!.allclose(expectedPhoto, rtol: 1e-5, atol: 1e-6), $"video history: {inputs.PhotoText!.sub(expectedPhoto).abs().max().item<float>()}");
        Assert.True(inputs.CommentText!.allclose(expectedComment, rtol: 1e-5, atol: 1e-6), $"comment history: {inputs.CommentText!.sub(expectedComment).abs().max().item<float>()}");
        Assert.True(bias.abs().sum().item<float>() > 0);
    }

    /// <summary>MODEL.md §2.3: a comment-history entry's text is the mean of all its comments (the reference collator
    /// has no cap). An entry with 40 comments, by hand against the float32 model (the CPU gather-mean kernel) and the
    /// same model in float64 (the plain libtorch mean).</summary>
    [Fact]
    public void A_comment_entry_with_forty_comments_is_averaged_over_all_of_them()
    {
        var (photoText, commentText) = Tiny.Texts();
        using var model = Tiny.Model();
        long[] many = [.. Enumerable.Range(0, 40).Select(i => 1L + i * 7 % (Tiny.Comments - 1))];
        SrBatch Batch() => new()
        {
            PhotoHistory = tensor(new long[,] { { 1, 2 } }), PhotoHistoryComment = tensor(new long[,] { { 1, 0 } }),
            CommentHistoryPhoto = tensor(new long[,] { { 3, 4 } }),
            CommentHistoryComments = CommentBags.FromArrays([.. many, 5], [0, 40, 41]),
            Target = tensor(new long[] { 2 }),
        };
        var sd = model.state_dict();
        var (adapter, merge, bias) = (sd["llm_adapter.weight"].to(ScalarType.Float64), sd["pc_merge.weight"].to(ScalarType.Float64), sd["pc_merge.bias"].to(ScalarType.Float64));
        var mean = new double[Tiny.TextDim];
        foreach (var c in many)
            for (var j = 0; j < Tiny.TextDim; j++) mean[j] += commentText[c, j].item<float>() / 40.0;
        var title = photoText[3].to(ScalarType.Float64).matmul(adapter.t());
        var expected = cat([title, tensor(mean).matmul(adapter.t())]).matmul(merge.t()).add(bias);

        using var _ = no_grad();
        using var batch = Batch();
        var kernel = model.EncodeInputs(batch, null).CommentText!;
        Assert.True(kernel[0, 0].to(ScalarType.Float64).allclose(expected, 1e-5, 1e-6), $"{kernel[0, 0].to(ScalarType.Float64).sub(expected).abs().max().item<double>()}");
        model.to(ScalarType.Float64);
        using var batch64 = Batch();
        var plain = model.EncodeInputs(batch64, null).CommentText!;
        Assert.True(plain[0, 0].allclose(expected, 1e-9, 1e-9), $"{plain[0, 0].sub(expected).abs().max().item<double>()}");
        Assert.True(plain.to(ScalarType.Float32).allclose(kernel, 1e-5, 1e-6));
    }

    [Fact]
    public void P_linear_over_the_pair_equals_the_linear_layer_over_the_concatenation()
    {
        manual_seed(11);
        using var linear = TorchSharp.torch.nn.Linear(16, 8);
        using var h = randn(3, 5, 8);
        using var m = randn(3, 5, 8);
        using var expected = linear.forward(cat([h, m], -1));
        using var model = Model();
        using var actual = model.Project(linear, h, m);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6), $"{actual.sub(expected).abs().max().item<float>()}");
    }

    [Fact]
    public void Masks_are_additive_causal_and_bidirectional()
    {
        using var ids = tensor(new long[,] { { 4, 9, 0 } });
        using var causal = Masks.Causal(ids);
        Assert.Equal(new long[] { 1, 1, 3, 3 }, causal.shape);
        const float h = -1e6f;
        Assert.Equal(new[] { 0, h, h, 0, 0, h, 0, 0, h }, causal.data<float>().ToArray());
        using var bidir = Masks.Bidirectional(ids);
        Assert.Equal(new long[] { 1, 1, 1, 3 }, bidir.shape);
        Assert.Equal(new[] { 0, 0, h }, bidir.data<float>().ToArray());
    }

    [Theory]
    [InlineData(TaskKind.Rec)]
    [InlineData(TaskKind.CommRank)]
    public void Encode_gives_finite_unit_vectors_even_for_an_empty_comment_history(TaskKind task)
    {
        using var model = Model();
        model.eval();
        using var batch = Tiny.Batch();
        var (user, idText) = model.Encode(batch, task);
        Assert.Null(idText);
        Assert.Equal(new long[] { 3, 8 }, user.shape);
        Assert.True(user.isfinite().all().item<bool>());
        var norms = user.norm(1).data<float>().ToArray();
        Assert.All(norms, n => Assert.Equal(1f, n, 1e-5f));
    }

    [Fact]
    public void Eval_is_deterministic_and_train_applies_dropout()
    {
        using var model = Model();
        using var batch = Tiny.Batch();
        model.eval();
        var a = model.Encode(batch, TaskKind.Rec).User;
        var b = model.Encode(batch, TaskKind.Rec).User;
        Assert.True(a.allclose(b, 0, 0));
        model.train();
        var c = model.Encode(batch, TaskKind.Rec).User;
        Assert.False(a.allclose(c, 1e-4, 1e-4));
    }

    [Fact]
    public void Scores_are_cosine_over_temperature_with_pad_masked()
    {
        using var model = Model();
        model.eval();
        using var batch = Tiny.Batch();
        using var _ = no_grad();
        var user = model.Encode(batch, TaskKind.Rec).User;
        var all = model.ScoreAllVideos(user);
        Assert.Equal(new long[] { 3, Tiny.Photos }, all.shape);
        Assert.Equal(-1e6f, all[1, 0].item<float>());
        var videos = model.VideoVectors();
        var expected = (user[1] * videos[4]).sum().item<float>() / 0.07f;
        Assert.Equal(expected, all[1, 4].item<float>(), 1e-4f);
        Assert.True(all.narrow(1, 1, Tiny.Photos - 1).abs().max().item<float>() <= 1 / 0.07f + 1e-3f);

        using var cands = tensor(new long[,] { { 4, 2, 0 }, { 1, 6, 3 }, { 3, 5, 0 } });
        var some = model.ScoreCandidates(user, cands, TaskKind.Rec);
        Assert.Equal(all[1, 6].item<float>(), some[1, 1].item<float>(), 1e-4f);
        Assert.Equal(-1e6f, some[0, 2].item<float>());

        using var comments = tensor(new long[,] { { 3, 5 }, { 12, 0 }, { 1, 2 } });
        var cu = model.Encode(batch, TaskKind.CommRank).User;
        var cs = model.ScoreCandidates(cu, comments, TaskKind.CommRank);
        var cv = model.CommentVectors(comments);
        Assert.Equal((cu[1] * cv[1, 0]).sum().item<float>() / 0.07f, cs[1, 0].item<float>(), 1e-4f);
        Assert.Equal(-1e6f, cs[1, 1].item<float>());
    }

    /// <summary><c>to(float64)</c> converts the text tables with the weights: a float64 copy of a model scores
    /// like the float32 original (to float32 rounding), both tasks, in float64 throughout.</summary>
    [Fact]
    public void Converting_the_model_converts_its_text_tables()
    {
        using var single = Model();
        using var converted = Model();
        converted.to(ScalarType.Float64);
        single.eval();
        converted.eval();
        using var batch = Tiny.Batch();
        using var _ = no_grad();
        var (user32, user64) = (single.Encode(batch, TaskKind.Rec).User, converted.Encode(batch, TaskKind.Rec).User);
        Assert.Equal(ScalarType.Float64, user64.dtype);
        Assert.True(user64.to(ScalarType.Float32).allclose(user32, 1e-4, 1e-5));
        var (all32, all64) = (single.ScoreAllVideos(user32), converted.ScoreAllVideos(user64));
        Assert.Equal(ScalarType.Float64, all64.dtype);
        Assert.True(all64.to(ScalarType.Float32).allclose(all32, 1e-4, 1e-4));
        using var comments = tensor(new long[,] { { 3, 5 }, { 12, 0 }, { 1, 2 } });
        var (cu32, cu64) = (single.Encode(batch, TaskKind.CommRank).User, converted.Encode(batch, TaskKind.CommRank).User);
        var (cs32, cs64) = (single.ScoreCandidates(cu32, comments, TaskKind.CommRank), converted.ScoreCandidates(cu64, comments, TaskKind.CommRank));
        Assert.True(cs64.to(ScalarType.Float32).allclose(cs32, 1e-4, 1e-4));
        converted.to(ScalarType.Float32);
        Assert.True(converted.Encode(batch, TaskKind.Rec).User.allclose(user32, 1e-5, 1e-6));
    }

    [Fact]
    public void Video_vector_is_gate_times_id_plus_adapted_title()
    {
        using var model = Model();
        var sd = model.state_dict();
        using (no_grad()) sd["gate"].fill_(0.5f);
        var (titles, _) = Tiny.Texts();
        var raw = sd["photo_embedding.weight"][3] * 0.5f + titles[3].matmul(sd["llm_adapter.weight"].t());
        var expected = raw / raw.norm();
        Assert.True(model.VideoVectors(tensor(new long[] { 3 }))[0].allclose(expected, 1e-5, 1e-6));
        Assert.True(model.VideoVectors()[3].allclose(expected, 1e-5, 1e-6));
    }

    [Fact]
    public void Id_only_variant_scores_comments_from_comment_ids()
    {
        var config = Tiny.Config(c => c with { UseText = false, CommentIds = true });
        using var model = Model(config);
        Assert.DoesNotContain("llm_adapter.weight", model.state_dict().Keys);
        Assert.Contains("comment_embedding.weight", model.state_dict().Keys);
        model.eval();
        using var batch = Tiny.Batch();
        var (user, _) = model.Encode(batch, TaskKind.CommRank);
        Assert.True(user.isfinite().all().item<bool>());
        var emb = model.state_dict()["comment_embedding.weight"][5];
        Assert.True(model.CommentVectors(tensor(new long[] { 5 }))[0].allclose(emb / emb.norm(), 1e-5, 1e-6));
    }

    [Fact]
    public void Text_only_variant_needs_no_ids()
    {
        using var model = Model(Tiny.Config(c => c with { UseIds = false }));
        model.eval();
        using var batch = Tiny.Batch();
        var (user, _) = model.Encode(batch, TaskKind.Rec);
        Assert.True(user.isfinite().all().item<bool>());
        var (titles, _) = Tiny.Texts();
        var raw = titles[2].matmul(model.state_dict()["llm_adapter.weight"].t());
        Assert.True(model.VideoVectors()[2].allclose(raw / raw.norm(), 1e-5, 1e-6));
    }

    [Fact]
    public void History_longer_than_max_position_is_rejected()
    {
        using var model = Model();
        using var batch = new SrBatch
        {
            PhotoHistory = ones(1, 6, dtype: ScalarType.Int64), PhotoHistoryComment = zeros(1, 6, dtype: ScalarType.Int64),
            CommentHistoryPhoto = zeros(1, 1, dtype: ScalarType.Int64), CommentHistoryComments = CommentBags.Empty(1),
            Target = ones(1, dtype: ScalarType.Int64),
        };
        var e = Assert.Throws<ArgumentException>(() => model.Encode(batch, TaskKind.Rec));
        Assert.Contains("MaxPosition=5", e.Message);
    }

    [Fact]
    public void Stack_layers_all_attend_to_the_original_kv()
    {
        var config = Tiny.Config(c => c with { HiddenDropout = 0, AttentionDropout = 0 });
        manual_seed(11);
        using var stack = new TransformerStack(config, 2, "s", Backend);
        using var l0 = new TransformerLayer(config, Backend);
        using var l1 = new TransformerLayer(config, Backend);
        using (no_grad())
        {
            foreach (var (name, t) in stack.state_dict())
            {
                var target = name.StartsWith("layer.0.") ? l0 : l1;
                target.state_dict()[name[8..]].copy_(t);
            }
        }
        var h = randn(2, 3, 8);
        var kv = randn(2, 4, 8);
        var mask = zeros(2, 1, 1, 4);
        var expected = l1.forward(l0.forward(h, kv, mask), kv, mask);
        Assert.True(stack.forward(h, kv, mask).allclose(expected, 1e-5, 1e-6));

        var self = stack.forward(h, h, zeros(2, 1, 1, 3));
        var reference = l1.forward(l0.forward(h, h, zeros(2, 1, 1, 3)), h, zeros(2, 1, 1, 3));
        Assert.True(self.allclose(reference, 1e-5, 1e-6));
        using var standard = new TransformerStack(config with { StandardStacking = true }, 2, "s", Backend);
        standard.load_state_dict(stack.state_dict());
        var h1 = l0.forward(h, h, zeros(2, 1, 1, 3));
        Assert.True(standard.forward(h, h, zeros(2, 1, 1, 3)).allclose(l1.forward(h1, h1, zeros(2, 1, 1, 3)), 1e-5, 1e-6));
    }

    /// <summary>The attention module of this class's backend, in training (the CPU backend's fused node) and in
    /// evaluation (the plain modules with libtorch's attention kernel), self- and cross-attending, against the
    /// formula; then with attention dropout p = 1e-9, whose threshold is below every 16-bit draw, so every probability
    /// is kept and the numbers must not change.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Attention_matches_the_reference_formula_in_training_and_evaluation(bool training)
    {
        var config = Tiny.Config(c => c with { HiddenDropout = 0, AttentionDropout = 0 });
        manual_seed(13);
        using var mha = Backend.MultiHeadAttention(config);
        Assert.Equal(Backend == ModelBackend.CpuKernels, mha is Cpu.CpuMultiHeadAttention);
        mha.train(training);
        var sd = mha.state_dict();
        var x = randn(2, 3, 8);
        using var ids = tensor(new long[,] { { 5, 6, 0 }, { 1, 0, 0 } });
        var mask = Masks.Causal(ids);
        Tensor Proj(string n, Tensor t) => t.matmul(sd[n + ".weight"].t()).add(sd[n + ".bias"]);
        Tensor Heads(Tensor t) => t.view(2, 3, 2, 4).transpose(1, 2);
        var probs = Heads(Proj("query", x)).matmul(Heads(Proj("key", x)).transpose(2, 3)).div(2.0).add(mask).softmax(-1);
        var ctx = probs.matmul(Heads(Proj("value", x))).transpose(1, 2).reshape(2, 3, 8);
        var expected = nn.functional.layer_norm(Proj("out_linear", ctx).add(x), [8], sd["LayerNorm.weight"], sd["LayerNorm.bias"], 1e-8);
        Assert.True(mha.forward(x, x, mask).allclose(expected, 1e-5, 1e-5));          // self: q/k/v as one projection
        Assert.True(mha.forward(x, x.alias(), mask).allclose(expected, 1e-5, 1e-5));  // cross: separate projections

        using var kept = Backend.MultiHeadAttention(config with { AttentionDropout = 1e-9 });
        kept.load_state_dict(sd);
        kept.train(training);
        Assert.True(kept.forward(x, x, mask).allclose(expected, 1e-5, 1e-5));
    }
}

public sealed class RecComTestsPlain : RecComTests
{
    private protected override ModelBackend Backend => ModelBackend.Plain;
}

[Trait("Category", "Kernels")]
public sealed class RecComTestsCpuKernels : RecComTests
{
    private protected override ModelBackend Backend => ModelBackend.CpuKernels;
}
