using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>rec_att of MODEL.md §2.1: softmax over positions of attn(h_i) + mask_i, then Σ weight·h, where
/// attn = Linear(d→2d), Dropout, LayerNorm, GELU, Linear(2d→1) (the reference's Sequential: parameters at 0, 2, 4).</summary>
internal class AdditiveAttention : nn.Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // reference parameter names
    private protected readonly Sequential attn;
#pragma warning restore IDE1006
    private protected readonly double DropoutP;
    private protected readonly double Eps;

    public AdditiveAttention(RecComConfig c) : base("rec_att")
    {
        attn = nn.Sequential(
            nn.Linear(c.Hidden, 2 * c.Hidden),
            new DropoutModule(c.HiddenDropout),
            nn.LayerNorm(2 * c.Hidden, c.LayerNormEps),
            nn.GELU(),
            nn.Linear(2 * c.Hidden, 1));
        DropoutP = c.HiddenDropout;
        Eps = c.LayerNormEps;
        RegisterComponents();
    }

    /// <param name="h">[B, L, d]</param>
    /// <param name="mask">[B, L] additive</param>
    /// <returns>[B, d]</returns>
    public override Tensor forward(Tensor h, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var w = attn.forward(h).squeeze(-1).add(mask).softmax(-1);
        return bmm(w.unsqueeze(1), h).squeeze(1).MoveToOuterDisposeScope();
    }
}
