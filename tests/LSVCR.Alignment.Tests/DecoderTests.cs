using LSVCR.Alignment.Decoder;
using LSVCR.Alignment.Lora;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Alignment.Tests;

public class DecoderTests
{
    [Fact]
    public void RmsNorm_divides_by_the_root_mean_square()
    {
        var norm = new RmsNorm(4, 1e-6, "norm");
        using (no_grad()) norm.named_parameters().Single().parameter.copy_(tensor(new float[] { 1, 1, 2, 0.5f }));
        var y = norm.forward(tensor(new float[] { 1, 2, 3, 4 }, 1, 4)).data<float>().ToArray();
        var r = (float)Math.Sqrt(30.0 / 4 + 1e-6);
        Assert.Equal(new[] { 1 / r, 2 / r, 6 / r, 2 / r }, y, new Tolerance(1e-6f));
    }

    [Fact]
    public void Rotary_rotates_the_half_pairs_by_position_times_frequency()
    {
        // d = 4, θ = 10000: frequencies [1, 1/100]; pairs (x0, x2) and (x1, x3).
        var (cos, sin) = RotaryEmbedding.Table(2, 4, 10000, CPU, ScalarType.Float32);
        var x = tensor(new float[] { 1, 2, 3, 4, 1, 2, 3, 4 }, 1, 1, 2, 4);
        var y = RotaryEmbedding.Apply(x, cos, sin).data<float>().ToArray();
        Assert.Equal(new[] { 1f, 2, 3, 4 }, y[..4], new Tolerance(1e-6f)); // position 0: no rotation
        double c1 = Math.Cos(1), s1 = Math.Sin(1), c2 = Math.Cos(0.01), s2 = Math.Sin(0.01);
        var expected = new[] { 1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + 1 * s1, 4 * c2 + 2 * s2 }.Select(v => (float)v).ToArray();
        Assert.Equal(expected, y[4..], new Tolerance(1e-5f));
    }

    [Fact]
    public void SwiGlu_is_down_of_silu_gate_times_up()
    {
        var mlp = new SwiGluMlp(TinyDecoder.Config() with { Hidden = 1, Intermediate = 1 });
        using (no_grad())
            foreach (var (name, p) in mlp.named_parameters())
                p.fill_(name.StartsWith("gate") ? 2f : name.StartsWith("up") ? 3f : 0.5f);
        var y = mlp.forward(tensor(new float[] { 1 }, 1, 1)).item<float>();
        // silu(2) = 2·σ(2) = 1.76160; ·3 = 5.28482; ·0.5 = 2.64241.
        Assert.Equal(0.5 * 3 * 2 / (1 + Math.Exp(-2)), y, 5);
    }

    [Fact]
    public void Grouped_query_heads_share_their_key_value_head()
    {
        var c = TinyDecoder.Config() with { Hidden = 8, Heads = 4, KeyValueHeads = 2 };
        manual_seed(11);
        var attn = new DecoderAttention(c);
        var p = attn.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter);
        var x = randn(1, 3, 8);
        var (cos, sin) = RotaryEmbedding.Table(3, 2, 10000, CPU, ScalarType.Float32);
        var mask = zeros(1, 1, 3, 3).masked_fill(ones(3, 3, dtype: ScalarType.Bool).triu(1), float.MinValue / 2);
        using var _ = no_grad();
        var got = attn.forward(x, cos, sin, mask);

        // Reference by hand: head h uses kv head h / 2, causal softmax(q·k/√d)·v per position, then o_proj.
        var q = F.linear(x, p["q_proj.weight"], p["q_proj.bias"]).view(3, 4, 2);
        var k = F.linear(x, p["k_proj.weight"], p["k_proj.bias"]).view(3, 2, 2);
        var v = F.linear(x, p["v_proj.weight"], p["v_proj.bias"]).view(3, 2, 2);
        var ctx = zeros(3, 4, 2);
        for (int h = 0; h < 4; h++)
        for (int i = 0; i < 3; i++)
        {
            var qi = Rotate(q[i, h], i);
            var scores = Enumerable.Range(0, i + 1).Select(j => qi.dot(Rotate(k[j, h / 2], j)).item<float>() / Math.Sqrt(2)).ToArray();
            var w = scores.Select(s => Math.Exp(s - scores.Max())).ToArray();
            var sum = w.Sum();
            for (int j = 0; j <= i; j++) ctx[i, h].add_(v[j, h / 2].mul(w[j] / sum));
        }
        var expected = F.linear(ctx.view(1, 3, 8), p["o_proj.weight"]);
        Assert.True(got.allclose(expected, rtol: 1e-4, atol: 1e-5), $"max diff {got.sub(expected).abs().max().item<float>()}");
    }

    /// <summary>2-d rotary by hand: angle = position (frequency 1 for d = 2), (a, b) → (a cos − b sin, b cos + a sin).</summary>
    private static Tensor Rotate(Tensor v, int position)
    {
        float a = v[0].item<float>(), b = v[1].item<float>();
        double c = Math.Cos(position), s = Math.Sin(position);
        return tensor(new[] { (float)(a * c - b * s), (float)(b * c + a * s) });
    }

    [Fact]
    public void Loads_a_hugging_face_folder_with_its_tokenizer()
    {
        var config = TinyDecoder.Config();
        var dir = TinyDecoder.Write(config, seed: 5);
        try
        {
            var model = HfDecoderFolder.Load(dir);
            Assert.Equal("decoder:qwen2", model.Kind);
            Assert.Equal(new[] { 12, 13, 4, 7, 3, 8 }, model.Tokenizer.Encode("hello world"));
            manual_seed(5);
            var reference = new DecoderLm(config, new CharTokenizer()); // same seed → the weights written to the folder
            var ids = tensor(new long[] { 12, 13, 4, 7, 3, 8 }, 1, 6);
            var mask = ones(1, 6, dtype: ScalarType.Int64);
            using var _ = no_grad();
            model.eval();
            reference.eval();
            var got = model.LmLogits(model.forward(ids, mask));
            Assert.Equal(new long[] { 1, 6, 16 }, got.shape);
            Assert.True(got.allclose(reference.LmLogits(reference.forward(ids, mask)), rtol: 0, atol: 1e-6));
            // Causal: the first position's hidden state does not depend on later tokens.
            var other = tensor(new long[] { 12, 1, 1, 1, 1, 1 }, 1, 6);
            Assert.True(model.forward(ids, mask)[0, 0].allclose(model.forward(other, mask)[0, 0], rtol: 0, atol: 1e-6));
            Assert.False(model.forward(ids, mask)[0, 5].allclose(model.forward(other, mask)[0, 5], rtol: 0, atol: 1e-3));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Reports_a_missing_weight_and_an_unsupported_model_type()
    {
        var dir = TinyDecoder.Write(TinyDecoder.Config(tied: true));
        try
        {
            // The weights were written tied (no lm_head.weight): a config claiming an untied head must say what is missing.
            File.WriteAllText(Path.Combine(dir, "config.json"), System.Text.Json.JsonSerializer.Serialize(TinyDecoder.Config(tied: false)));
            var e = Assert.Throws<LsvcrException>(() => HfDecoderFolder.Load(dir));
            Assert.Contains("lm_head.weight", e.Message);
            File.WriteAllText(Path.Combine(dir, "config.json"), System.Text.Json.JsonSerializer.Serialize(TinyDecoder.Config(type: "gpt2")));
            e = Assert.Throws<LsvcrException>(() => HfDecoderFolder.Load(dir));
            Assert.Contains("model_type 'gpt2'", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Lm_loss_falls_on_a_fixed_prompt_when_training_lora()
    {
        // Weights of std 0.3 (not 0.02) so the frozen head can express confident predictions, as a pretrained one can.
        var dir = TinyDecoder.Write(TinyDecoder.Config(type: "llama", tied: false), seed: 9, std: 0.3);
        try
        {
            var model = HfDecoderFolder.Load(dir);
            manual_seed(1);
            LoraModel.Apply(model, new LoraOptions { Rank = 4, Alpha = 16, Dropout = 0 });
            var tok = model.Tokenizer;
            var prompt = tok.Encode("hello world hello");
            var response = tok.Encode(" world");
            var ids = tensor(prompt.Concat(response).Select(i => (long)i).ToArray(), 1, prompt.Length + response.Length);
            var responseMask = tensor(prompt.Select(_ => 0L).Concat(response.Select(_ => 1L)).ToArray(), 1, ids.shape[1]);
            var mask = ones_like(ids);
            var optimizer = optim.AdamW(model.parameters().Where(p => p.requires_grad), lr: 0.02, weight_decay: 0);
            model.train();
            var losses = new List<float>();
            for (int step = 0; step < 40; step++)
            {
                using var scope = NewDisposeScope();
                optimizer.zero_grad();
                var loss = AlignmentLosses.Lm(model.LmLogits(model.forward(ids, mask)), ids, responseMask);
                loss.backward();
                optimizer.step();
                losses.Add(loss.item<float>());
            }
            Assert.True(losses[0] > 1.0f, $"initial loss {losses[0]}");
            Assert.True(losses[^1] < 0.25f * losses[0], $"loss {losses[0]} → {losses[^1]}");
        }
        finally { Directory.Delete(dir, true); }
    }
}
