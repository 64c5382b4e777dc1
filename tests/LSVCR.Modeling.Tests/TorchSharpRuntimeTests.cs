using LSVCR.Modeling.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

public class TorchSharpRuntimeTests
{
    [Fact]
    public void Native_runtime_runs_forward_and_backward_of_a_linear_layer()
    {
        torch.manual_seed(7);
        using var layer = nn.Linear(3, 2);
        using (torch.no_grad())
        {
            layer.weight!.copy_(tensor(new float[] { 1, 2, 3, -1, 0, 1 }).reshape(2, 3));
            layer.bias!.copy_(tensor(new float[] { 0.5f, -0.5f }));
        }
        using var x = tensor(new float[] { 1, 1, 1, 2, 0, -1 }).reshape(2, 3);
        using var y = layer.forward(x);
        // y = x Wᵀ + b: row 0 = [6.5, -0.5], row 1 = [-0.5, -3.5]
        Assert.Equal(new float[] { 6.5f, -0.5f, -0.5f, -3.5f }, y.data<float>().ToArray());

        using var loss = y.sum();
        loss.backward();
        // d(sum)/dW[j,k] = Σ_i x[i,k]; d(sum)/db[j] = batch size
        Assert.Equal(new float[] { 3, 1, 0, 3, 1, 0 }, layer.weight!.grad!.data<float>().ToArray());
        Assert.Equal(new float[] { 2, 2 }, layer.bias!.grad!.data<float>().ToArray());
    }
}
