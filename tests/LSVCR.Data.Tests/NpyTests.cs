using LSVCR.TestServers;

namespace LSVCR.Data.Tests;

public class NpyTests
{
    [Fact]
    public void Writes_the_numpy_magic_bytes_and_reads_them_back()
    {
        using var dir = new TestDir();
        var path = dir.File("m.npy");
        Npy.Write(path, new FloatMatrix([1f, 2f, 3f, 4f, 5f, 6f], 2, 3));
        var bytes = File.ReadAllBytes(path);
        // NumPy requires exactly \x93NUMPY; a C# "\x93"u8 literal would encode U+0093 as two bytes (C2 93).
        Assert.Equal(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 }, bytes[..8]);
        Assert.Equal(128 + 24, bytes.Length); // preamble + dict padded to a multiple of 64, then 6 floats
        var back = Npy.Read(path);
        Assert.Equal((2, 3), (back.Rows, back.Cols));
        Assert.Equal([4f, 5f, 6f], back.Row(1).ToArray());
        // numpy's own reader: the dtype, shape and values it sees, and the data offset it requires (a multiple of 64).
        var read = DebianPython.Run($"""
            import numpy as np
            a = np.load(r'{path}')
            with open(r'{path}', 'rb') as f:
                np.lib.format.read_magic(f)
                np.lib.format.read_array_header_1_0(f)
                offset = f.tell()
            print(a.dtype, a.shape, a.tolist(), offset % 64)
            """);
        Assert.Equal("float32 (2, 3) [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]] 0", read);
    }
}
