using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LSVCR.Alignment.Decoder;

/// <summary>RMSNorm: x / sqrt(mean(x²) + eps) · weight, the statistic in float32 whatever the weights' dtype (as HF).</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Parameter weight;
#pragma warning restore IDE1006
    private readonly double _eps;

    public RmsNorm(int size, double eps, string name) : base(name)
    {
        weight = new Parameter(ones(size));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32.mul(x32.pow(2).mean([-1], keepdim: true).add(_eps).rsqrt()).to(x.dtype);
        return normed.mul(weight).MoveToOuterDisposeScope();
    }
}
