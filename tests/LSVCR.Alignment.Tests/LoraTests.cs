using LSVCR.Alignment.Lora;
using LSVCR.Alignment.MiniLm;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Alignment.Tests;

public class LoraTests
{
    internal static BertEncoder TinyBert(int seed = 1)
    {
        manual_seed(seed);
        return new BertEncoder(new BertConfig { VocabSize = 50, Hidden = 16, Layers = 2, Heads = 2, Intermediate = 32, MaxPositions = 32 },
            new CharTokenizer());
    }

    [Fact]
    public void Base_weights_are_frozen_and_unchanged_by_an_optimiser_step()
    {
        var model = TinyBert();
        var adapted = LoraModel.Apply(model, new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1 });
        Assert.Equal(12, adapted.Count); // 6 projections × 2 layers
        var before = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var trainable = model.parameters().Where(p => p.requires_grad).ToList();
        Assert.Equal(24, trainable.Count);
        Assert.All(model.named_parameters().Where(p => p.parameter.requires_grad), p => Assert.Matches(@"\.lora_[AB]$", p.name));

        var optimizer = optim.AdamW(trainable, lr: 0.01);
        model.train();
        var ids = tensor(new long[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        var mask = ones(2, 3, dtype: ScalarType.Int64);
        for (int step = 0; step < 2; step++)
        {
            optimizer.zero_grad();
            // (not a mean of squares: the final LayerNorm makes that constant)
            model.forward(ids, mask).select(-1, 0).sum().backward();
            optimizer.step();
        }
        foreach (var (name, value) in model.state_dict())
        {
            bool changed = !value.allclose(before[name], rtol: 0, atol: 0);
            if (name.EndsWith(".lora_A") || name.EndsWith(".lora_B")) Assert.True(changed, $"{name} did not train (grad {model.named_parameters().Single(p => p.name == name).parameter.grad?.abs().sum().item<float>()})");
            else Assert.False(changed, $"{name} changed");
        }
    }

    [Fact]
    public void Merged_output_equals_unmerged_output()
    {
        var model = TinyBert();
        LoraModel.Apply(model, new LoraOptions { Rank = 4, Alpha = 32, Dropout = 0.1 });
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.EndsWith(".lora_B")) p.normal_(0, 0.5); // B starts at zero; make the adapter matter
        model.eval();
        var ids = tensor(new long[] { 1, 7, 3, 9, 5, 0 }, 2, 3);
        var mask = tensor(new long[] { 1, 1, 1, 1, 1, 0 }, 2, 3);
        using var _ = no_grad();
        var plain = TinyBert().forward(ids, mask);
        var unmerged = model.forward(ids, mask);
        Assert.True(unmerged.sub(plain).abs().max().item<float>() > 1e-2f, "the adapter should change the output");
        var weightBefore = model.named_parameters().Single(p => p.name == "layer.0.query.weight").parameter.clone();
        LoraModel.Merge(model);
        var merged = model.forward(ids, mask);
        Assert.True(merged.allclose(unmerged, rtol: 1e-4, atol: 1e-5), $"max diff {merged.sub(unmerged).abs().max().item<float>()}");
        Assert.False(model.named_parameters().Single(p => p.name == "layer.0.query.weight").parameter.allclose(weightBefore));
    }

    [Fact]
    public void Adapts_only_the_target_projections()
    {
        var model = TinyBert();
        var adapted = LoraModel.Apply(model, new LoraOptions { Targets = ["query", "value"] });
        Assert.Equal(["layer.0.query", "layer.0.value", "layer.1.query", "layer.1.value"], adapted.Order());
        Assert.Equal(8, LoraModel.AdapterState(model).Count);
        var e = Assert.Throws<LsvcrException>(() => LoraModel.Apply(TinyBert(), new LoraOptions { Targets = ["q_proj"] }));
        Assert.Contains("q_proj", e.Message);
        Assert.Contains("query", e.Message);
    }

    [Fact]
    public void Adapter_delta_is_scaled_by_alpha_over_rank()
    {
        manual_seed(3);
        var layer = new LoraLinear(3, 2, true, "query");
        layer.EnableLora(new LoraOptions { Rank = 2, Alpha = 6, Dropout = 0 });
        using var _ = no_grad();
        layer.LoraA!.copy_(tensor(new float[] { 1, 0, 0, 0, 1, 0 }, 2, 3));
        layer.LoraB!.copy_(tensor(new float[] { 1, 0, 0, 2 }, 2, 2));
        layer.Weight.zero_();
        layer.Bias!.copy_(tensor(new float[] { 0.5f, -0.5f }));
        var y = layer.forward(tensor(new float[] { 1, 2, 3 }, 1, 3));
        // B·A·x = [1, 4]; scaling 6/2 = 3 → [3, 12]; plus bias.
        Assert.Equal(new[] { 3.5f, 11.5f }, y.data<float>().ToArray());
    }
}

/// <summary>One token per character (ids 3…), [CLS]=1, [SEP]=2, pad 0: enough for shape and gradient tests.</summary>
internal sealed class CharTokenizer : BackboneTokenizer
{
    public override int[] Encode(string text) => text.Select(c => 3 + c % 40).ToArray();
    public override int PadId => 0;
    public override IReadOnlyList<int> Prefix { get; } = [1];
    public override IReadOnlyList<int> Suffix { get; } = [2];
}
