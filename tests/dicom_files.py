"""Tiny DICOM files built with pydicom in the tests (no data downloaded): one frame or several,
grayscale or colour, windowed or not, with or without pixel data."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom(path: Path, pixels: np.ndarray | None, photometric: str = "MONOCHROME2", bits_stored: int = 12,
                frames: int = 1, planar: int = 0, patient: str = "Doe^Jane", **elements) -> Path:
    """Write `pixels` ([H, W] grayscale, [H, W, 3] colour, [F, H, W] frames; None: no pixel data) as an
    Explicit VR Little Endian DICOM at `path`; `elements` are extra header keywords (WindowCenter=...)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = patient, "PID-0042-SECRET", "OT"
    if pixels is not None:
        colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
        ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
        ds.SamplesPerPixel = 3 if colour else 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = pixels.dtype.itemsize * 8
        ds.BitsStored = bits_stored if not colour else ds.BitsAllocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
        if colour:
            ds.PlanarConfiguration = planar
            if planar:  # R plane, then G, then B
                pixels = np.ascontiguousarray(np.moveaxis(pixels, -1, -3))
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(height: int = 64, width: int = 64, top: int = 4095, dtype=np.uint16) -> np.ndarray:
    """[H, W] values rising left to right from 0 to `top`."""
    row = np.linspace(0, top, width)
    return np.rint(np.tile(row, (height, 1))).astype(dtype)


def without_preamble(path: Path, out: Path, implicit: bool = True, little: bool = True, meta: bool = False) -> Path:
    """Write DICOM file `path`'s dataset to `out` as older archives and some PACS exports do: no 128-byte
    preamble and no 'DICM' marker, starting with its first element (an ACR-NEMA style "raw" dataset), in
    implicit or explicit VR, little or big endian; `meta`: its File Meta group kept at the start."""
    from pydicom import dcmread
    from pydicom.filewriter import dcmwrite

    ds = dcmread(path)
    ds.preamble = None
    if not meta:
        del ds.file_meta
    if not little:  # the pixel bytes as a big-endian file holds them
        ds.PixelData = np.frombuffer(ds.PixelData, dtype="<u2").astype(">u2").tobytes()
    dcmwrite(out, ds, enforce_file_format=False, implicit_vr=implicit, little_endian=little)
    return out
