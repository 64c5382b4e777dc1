using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>FFN of MODEL.md §2.1: LayerNorm(Dropout(linear_2(GELU(linear_1(x)))) + x), GELU in its erf form.</summary>
internal class FeedForward : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // reference parameter names
    private protected readonly Linear linear_1;
    private protected readonly Linear linear_2;
    private protected readonly LayerNorm LayerNorm;
#pragma warning restore IDE1006
    private protected readonly double DropoutP;
    private protected readonly double Eps;

    public FeedForward(RecComConfig c) : base("feed_forward")
    {
        Eps = c.LayerNormEps;
        linear_1 = nn.Linear(c.Hidden, c.Inner);
        linear_2 = nn.Linear(c.Inner, c.Hidden);
        LayerNorm = nn.LayerNorm(c.Hidden, c.LayerNormEps);
        DropoutP = c.HiddenDropout;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = Dropout.Apply(linear_2.forward(F.gelu(linear_1.forward(x))), DropoutP, training);
        return LayerNorm.forward(y.add(x)).MoveToOuterDisposeScope();
    }
}
