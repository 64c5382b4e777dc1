using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace LSVCR.Alignment.Decoder;

/// <summary>
/// Loads a Hugging Face causal-LM folder — config.json, one or more *.safetensors (shards are merged), tokenizer.json —
/// into a <see cref="DecoderLm"/> on <paramref name="device"/> in <paramref name="dtype"/> (float32 on CPU; bfloat16 is
/// the usual choice on a GPU).
/// </summary>
public static class HfDecoderFolder
{
    public static DecoderLm Load(string folder, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        if (!Directory.Exists(folder)) throw new LsvcrException($"{folder}: model folder not found");
        var config = DecoderConfig.Read(Path.Combine(folder, "config.json") is var cf && File.Exists(cf)
            ? cf : throw new LsvcrException($"{folder}: no config.json"));
        var tokenizer = BpeTokenizerJson.Load(Path.Combine(folder, "tokenizer.json"), config.Bos);
        var files = Directory.GetFiles(folder, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
        if (files.Length == 0) throw new LsvcrException($"{folder}: no *.safetensors weights");
        var model = new DecoderLm(config, tokenizer);
        if (dtype != ScalarType.Float32) model.to(dtype);
        if (device is not null) model.to(device);
        var weights = new Dictionary<string, Tensor>();
        try
        {
            foreach (var file in files)
            {
                Dictionary<string, Tensor> part;
                try { part = Safetensors.LoadStateDict(file); }
                catch (Exception e) when (e is not OutOfMemoryException and not LsvcrException)
                {
                    throw new LsvcrException($"{file}: not a readable safetensors file ({e.Message})", e);
                }
                foreach (var (k, v) in part) weights[k] = v;
            }
            model.Load(weights, folder);
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
        return model;
    }
}
