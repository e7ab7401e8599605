import ij.IJ;
import ij.ImagePlus;
import ij.gui.Roi;
import ij.io.RoiDecoder;
import ij.process.ImageProcessor;
import java.awt.Rectangle;
import java.io.FileInputStream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;

/** For each ROI of a Fiji ROI zip, as ImageJ itself decodes it: its name, the pixels ImageJ puts
 *  inside it, and how many of those carry the ROI's cell id (the number after the last '-') in the
 *  label image, on the ROI's frame. Used by tests/runs/test_lab_formats.py. */
public class RoiPixels {
    public static void main(String[] args) throws Exception {
        ImagePlus labels = IJ.openImage(args[1]);
        try (ZipInputStream zip = new ZipInputStream(new FileInputStream(args[0]))) {
            ZipEntry entry;
            while ((entry = zip.getNextEntry()) != null) {
                Roi roi = new RoiDecoder(zip.readAllBytes(), entry.getName()).getRoi();
                String name = roi.getName();
                int cell = Integer.parseInt(name.substring(name.lastIndexOf('-') + 1));
                ImageProcessor frame = labels.getStack().getProcessor(Math.max(1, roi.getTPosition()));
                Rectangle box = roi.getBounds();
                ImageProcessor mask = roi.getMask();
                int inside = 0, match = 0;
                for (int y = 0; y < box.height; y++) {
                    for (int x = 0; x < box.width; x++) {
                        if (mask == null || mask.get(x, y) != 0) {
                            inside++;
                            if ((int) frame.getPixelValue(box.x + x, box.y + y) == cell) match++;
                        }
                    }
                }
                System.out.println(name + " " + inside + " " + match);
            }
        }
    }
}
