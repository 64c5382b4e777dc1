using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Alignment.Lora;

/// <summary>Applies, lists, merges and exports the LoRA adapters of a module tree.</summary>
public static class LoraModel
{
    /// <summary>
    /// Freezes every parameter of <paramref name="model"/> and adds an adapter to each <see cref="LoraLinear"/> whose
    /// own name is in <paramref name="options"/>' targets (null = all of them). Returns the adapted module paths.
    /// </summary>
    public static IReadOnlyList<string> Apply(nn.Module model, LoraOptions options)
    {
        options.Validate();
        var layers = model.named_modules().Where(m => m.module is LoraLinear).ToList();
        var known = layers.Select(m => LastName(m.name)).ToHashSet();
        if (options.Targets is { } targets && targets.FirstOrDefault(t => !known.Contains(t)) is { } unknown)
            throw new LsvcrException($"lora-targets: '{unknown}' is not a projection of this backbone (it has: {string.Join(", ", known.Order())})");
        foreach (var (_, p) in model.named_parameters()) p.requires_grad = false;
        var adapted = new List<string>();
        foreach (var (name, module) in layers)
        {
            if (options.Targets is { } t && !t.Contains(LastName(name))) continue;
            ((LoraLinear)module).EnableLora(options);
            adapted.Add(name);
        }
        return adapted;
    }

    /// <summary>Folds every adapter into its base weight (export); the model's function is unchanged.</summary>
    public static void Merge(nn.Module model)
    {
        foreach (var (_, m) in model.named_modules())
            if (m is LoraLinear l) l.Merge();
    }

    /// <summary>The adapter parameters only (<c>….lora_A</c>, <c>….lora_B</c>), detached CPU copies for saving.</summary>
    public static Dictionary<string, Tensor> AdapterState(nn.Module model) =>
        model.state_dict().Where(kv => kv.Key.EndsWith(".lora_A") || kv.Key.EndsWith(".lora_B"))
            .ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().contiguous());

    private static string LastName(string path) => path[(path.LastIndexOf('.') + 1)..];
}
