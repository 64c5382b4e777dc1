using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary><see cref="Dropout"/> as a parameterless module, for the rec_att Sequential (index 1).</summary>
internal sealed class DropoutModule(double p) : nn.Module<Tensor, Tensor>("Dropout")
{
    public override Tensor forward(Tensor x) => Dropout.Apply(x, p, training);
}
