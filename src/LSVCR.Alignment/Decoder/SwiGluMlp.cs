using LSVCR.Alignment.Lora;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Alignment.Decoder;

/// <summary>SwiGLU feed-forward: down_proj(silu(gate_proj(x)) ⊙ up_proj(x)), no biases.</summary>
public sealed class SwiGluMlp : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly LoraLinear gate_proj;
    private readonly LoraLinear up_proj;
    private readonly LoraLinear down_proj;
#pragma warning restore IDE1006

    public SwiGluMlp(DecoderConfig c) : base("mlp")
    {
        gate_proj = new LoraLinear(c.Hidden, c.Intermediate, false, "gate_proj");
        up_proj = new LoraLinear(c.Hidden, c.Intermediate, false, "up_proj");
        down_proj = new LoraLinear(c.Intermediate, c.Hidden, false, "down_proj");
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.forward(F.silu(gate_proj.forward(x)).mul(up_proj.forward(x))).MoveToOuterDisposeScope();
    }
}
