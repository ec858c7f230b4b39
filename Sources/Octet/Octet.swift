@_exported import OctetCalibration
@_exported import OctetCore
@_exported import OctetFloat
@_exported import OctetImages
@_exported import OctetInt8
@_exported import OctetModels
@_exported import OctetQuantizer
