using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>
/// Stack of layers. Reference behaviour: every layer takes keys/values from the stack's ORIGINAL kv input (only the
/// query is updated). With <see cref="RecComConfig.StandardStacking"/> a self-attending stack (q and kv the same
/// tensor) instead attends to the previous layer's output; cross-attending stacks keep the other history as kv.
/// </summary>
internal sealed class TransformerStack : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // reference parameter names
    private readonly ModuleList<TransformerLayer> layer;
#pragma warning restore IDE1006
    private readonly bool _standard;

    public TransformerStack(RecComConfig c, int layers, string name, ModelBackend backend) : base(name)
    {
        layer = nn.ModuleList(Enumerable.Range(0, layers).Select(_ => new TransformerLayer(c, backend)).ToArray());
        _standard = c.StandardStacking;
        RegisterComponents();
    }

    public override Tensor forward(Tensor h, Tensor kv, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var selfAttending = ReferenceEquals(h, kv);
        var current = h;
        foreach (var l in layer)
            current = l.forward(current, _standard && selfAttending ? current : kv, mask);
        return (ReferenceEquals(current, h) ? current.alias() : current).MoveToOuterDisposeScope();
    }
}
