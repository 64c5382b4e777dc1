using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Alignment.Lora;

/// <summary>
/// A linear projection that can carry a LoRA adapter (<see cref="LoraOptions"/>). Without one it is a plain
/// <c>Linear</c> (parameters <c>weight</c> [out, in], optional <c>bias</c>); <see cref="EnableLora"/> adds
/// <c>lora_A</c> [r, in] and <c>lora_B</c> [out, r] and freezes the base; <see cref="Merge"/> folds (α/r)·B·A into
/// <c>weight</c> for export, after which the adapter path is off and the layer is a plain linear map again.
/// </summary>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PEFT's parameter names
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private Parameter? lora_A;
    private Parameter? lora_B;
#pragma warning restore IDE1006
    private double _scaling;
    private double _dropout;

    public LoraLinear(long inFeatures, long outFeatures, bool hasBias, string name) : base(name)
    {
        weight = new Parameter(empty(outFeatures, inFeatures));
        bias = hasBias ? new Parameter(zeros(outFeatures)) : null;
        using (no_grad()) nn.init.normal_(weight, 0, 0.02);
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public Parameter? Bias => bias;
    public Parameter? LoraA => lora_A;
    public Parameter? LoraB => lora_B;
    public bool HasAdapter => lora_A is not null;
    public bool Merged { get; private set; }
    public long InFeatures => weight.shape[1];
    public long OutFeatures => weight.shape[0];

    /// <summary>Adds the adapter (A Kaiming-uniform as PEFT, B zero) and freezes <c>weight</c>/<c>bias</c>.</summary>
    public void EnableLora(LoraOptions options)
    {
        options.Validate();
        if (HasAdapter) throw new InvalidOperationException($"{GetName()}: LoRA is already enabled");
        var device = weight.device;
        lora_A = new Parameter(empty(options.Rank, InFeatures, device: device));
        lora_B = new Parameter(zeros(OutFeatures, options.Rank, device: device));
        using (no_grad()) nn.init.kaiming_uniform_(lora_A, Math.Sqrt(5));
        register_parameter("lora_A", lora_A);
        register_parameter("lora_B", lora_B);
        _scaling = options.Scaling;
        _dropout = options.Dropout;
        weight.requires_grad = false;
        if (bias is not null) bias.requires_grad = false;
    }

    /// <summary>weight += (α/r)·B·A; the adapter no longer contributes (its parameters stay, B zeroed, for the record).</summary>
    public void Merge()
    {
        if (!HasAdapter || Merged) return;
        using var _ = no_grad();
        weight.add_(lora_B!.matmul(lora_A!).mul(_scaling).to(weight.dtype));
        lora_B.zero_();
        Merged = true;
    }

    public override Tensor forward(Tensor x)
    {
        var y = F.linear(x, weight, bias);
        if (!HasAdapter || Merged) return y;
        using var scope = NewDisposeScope();
        var dropped = training && _dropout > 0 ? F.dropout(x, _dropout, training: true) : x;
        var delta = F.linear(F.linear(dropped, lora_A!), lora_B!).mul(_scaling);
        return y.add(delta).MoveToOuterDisposeScope();
    }
}
