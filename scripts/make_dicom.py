#!/usr/bin/env python3
"""Writes a slide as a DICOM whole-slide series (VL Whole Slide Microscopy).

    make_dicom.py SLIDE OUT_FOLDER [--tile 256] [--quality 95] [--levels N]

One file per instance, as scanners and converters such as wsidicomizer write
them: the slide's levels as VOLUME instances (TILED_FULL, JPEG baseline
frames of TILE×TILE in RGB, 4:4:4) — with coarser levels made by halving
until a level fits in one tile, up to N levels in all — and its label and
macro images as LABEL and OVERVIEW instances. Every instance shares one
Series Instance UID (new on every call); file names are the instances' UIDs.

Pixels come from OpenSlide (openslide-python), frames are encoded by Pillow
and the files written by pydicom (pure Python); nothing else is needed. The
tests make their DICOM series with this script (tests/inputs.rs).
"""

import argparse
import datetime
import io
import os
import sys

import openslide
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEGBaseline8Bit, VLWholeSlideMicroscopyImageStorage, generate_uid


def frames(image, tile, quality):
    """The JPEG frames of `image` (a Pillow RGB image), row by row, edge
    tiles padded with white."""
    out = []
    for y in range(0, image.height, tile):
        for x in range(0, image.width, tile):
            part = Image.new("RGB", (tile, tile), (255, 255, 255))
            part.paste(image.crop((x, y, min(x + tile, image.width), min(y + tile, image.height))))
            buf = io.BytesIO()
            part.save(buf, "JPEG", quality=quality, subsampling=0, keep_rgb=True)
            out.append(buf.getvalue())
    return out


def code(value, scheme, meaning):
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def instance(shared, kind, image, tile, quality, mpp_mm, number):
    """One instance of the series `shared` (a dict of common attributes)."""
    ds = Dataset()
    for key, value in shared.items():
        setattr(ds, key, value)
    uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VLWholeSlideMicroscopyImageStorage
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta = meta
    ds.SOPClassUID = VLWholeSlideMicroscopyImageStorage
    ds.SOPInstanceUID = uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
    ds.InstanceNumber = number
    if kind != "VOLUME":
        tile = max(image.width, image.height)
    ds.Columns = ds.Rows = tile
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = image.width, image.height
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfOpticalPaths = 1
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES" if kind == "LABEL" else "NO"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.DimensionOrganizationType = "TILED_FULL"
    organization = Dataset()
    organization.DimensionOrganizationUID = shared["PyramidUID"]
    ds.DimensionOrganizationSequence = Sequence([organization])
    ds.ImagedVolumeWidth = image.width * mpp_mm
    ds.ImagedVolumeHeight = image.height * mpp_mm
    ds.ImagedVolumeDepth = 0.001
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = "0"
    origin.YOffsetInSlideCoordinateSystem = "0"
    ds.TotalPixelMatrixOriginSequence = Sequence([origin])
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    path = Dataset()
    path.OpticalPathIdentifier = "0"
    path.IlluminationTypeCodeSequence = Sequence([code("111744", "DCM", "Brightfield illumination")])
    path.IlluminationColorCodeSequence = Sequence([code("414298005", "SCT", "Full Spectrum")])
    ds.OpticalPathSequence = Sequence([path])
    measures = Dataset()
    measures.PixelSpacing = [f"{mpp_mm:.9g}", f"{mpp_mm:.9g}"]
    measures.SliceThickness = "0.001"
    frame_type = Dataset()
    frame_type.FrameType = ds.ImageType
    groups = Dataset()
    groups.PixelMeasuresSequence = Sequence([measures])
    groups.WholeSlideMicroscopyImageFrameTypeSequence = Sequence([frame_type])
    ds.SharedFunctionalGroupsSequence = Sequence([groups])
    data = frames(image, tile, quality)
    ds.NumberOfFrames = len(data)
    ds.PixelData = encapsulate(data)
    ds["PixelData"].VR = "OB"
    ds.PixelData_is_undefined_length = True
    return ds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("slide")
    ap.add_argument("out")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--levels", type=int, default=3, help="VOLUME levels at most (default 3)")
    args = ap.parse_args()
    if os.path.exists(args.out) and os.listdir(args.out):
        sys.exit(f"make_dicom.py: {args.out} is not empty")
    os.makedirs(args.out, exist_ok=True)
    slide = openslide.OpenSlide(args.slide)
    mpp = float(slide.properties.get(openslide.PROPERTY_NAME_MPP_X, 0.5))
    now = datetime.datetime.now()
    shared = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "PyramidUID": generate_uid(),
        "Modality": "SM",
        "Manufacturer": "wsiseg make_dicom.py",
        "SeriesNumber": 1,
        "StudyDate": now.strftime("%Y%m%d"),
        "StudyTime": now.strftime("%H%M%S"),
        "ContentDate": now.strftime("%Y%m%d"),
        "ContentTime": now.strftime("%H%M%S"),
        "PatientName": "",
        "PatientID": "",
        "AccessionNumber": "",
        "ContainerIdentifier": os.path.basename(args.slide),
        "PositionReferenceIndicator": "SLIDE_CORNER",
        "VolumetricProperties": "VOLUME",
        "SpecimenLabelInImage": "NO",
        "FocusMethod": "AUTO",
        "ExtendedDepthOfField": "NO",
    }
    written = []
    level = slide.read_region((0, 0), 0, slide.level_dimensions[0]).convert("RGB")
    scale = 1
    for n in range(args.levels):
        written.append(instance(shared, "VOLUME", level, args.tile, args.quality, mpp * scale / 1000, n + 1))
        if max(level.size) <= args.tile:
            break
        level = level.resize((max(1, level.width // 2), max(1, level.height // 2)), Image.BOX)
        scale *= 2
    for name, kind in (("label", "LABEL"), ("macro", "OVERVIEW")):
        if name in slide.associated_images:
            image = slide.associated_images[name].convert("RGB")
            written.append(instance(shared, kind, image, 0, args.quality, mpp * 10 / 1000, len(written) + 1))
    for ds in written:
        ds.save_as(os.path.join(args.out, ds.SOPInstanceUID + ".dcm"), enforce_file_format=True)
    kinds = [ds.ImageType[2] for ds in written]
    print(f"{args.out}: {len(written)} instances ({', '.join(kinds)}), series {shared['SeriesInstanceUID']}")


if __name__ == "__main__":
    main()
