"""HTTP routes of the device registry: /api/v1/devices*."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from sensorcloud.auth.devices_schemas import (
    DeviceCreate,
    DeviceCredentials,
    DeviceList,
    DeviceOut,
    MqttConnection,
)
from sensorcloud.auth.devices_service import MAX_DEVICES_PER_USER, Credentials, DeviceService
from sensorcloud.core.deps import CurrentPrincipal, RuntimeDep
from sensorcloud.core.settings import Settings

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
# Not validated here: a malformed id answers 404 like an unknown one.
DeviceId = Annotated[str, Path(description="The device's id (16 hex digits)")]
ERR = {"content": {"application/json": {"example": {"msg": "..."}}}}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token", **ERR}}
ONE_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    404: {"description": "No such device, or not yours", **ERR},
}


def get_service(runtime: RuntimeDep) -> DeviceService:
    return DeviceService(runtime.sessions, runtime.device_listeners)


Service = Annotated[DeviceService, Depends(get_service)]


def _quote(value: str) -> str:
    """Single-quoted for a POSIX shell (a custom prefix may hold a quote or a space)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _credentials(created: Credentials, settings: Settings) -> DeviceCredentials:
    device = created.device
    host = settings.mqtt_public_host or settings.mqtt_host
    port = settings.mqtt_public_port or settings.mqtt_port
    example = (
        f"mosquitto_pub -h {_quote(host)} -p {port} -u {device.id} -P {_quote(created.secret)} -i {device.id}"
        f" -q 1 -t {_quote(device.topic_prefix + '/temperature')} -m '{{\"value\": 21.5}}'"
    )
    return DeviceCredentials(
        **DeviceOut.model_validate(device).model_dump(),
        secret=created.secret,
        mqtt=MqttConnection(host=host, port=port, username=device.id, client_id=device.id),
        publish_example=example,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DeviceCredentials,
    responses={
        **AUTH_ERRORS,
        409: {"description": "Prefix overlaps another device's, or too many devices", **ERR},
    },
)
async def create_device(
    body: DeviceCreate, principal: CurrentPrincipal, service: Service, runtime: RuntimeDep
) -> DeviceCredentials:
    """Register a device; the answer holds its secret (shown only this once) and how to connect."""
    created = await service.create(principal, body.name, body.topic_prefix)
    return _credentials(created, runtime.settings)


@router.get("", response_model=DeviceList, responses=AUTH_ERRORS)
async def list_devices(
    principal: CurrentPrincipal,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=MAX_DEVICES_PER_USER)] = MAX_DEVICES_PER_USER,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> DeviceList:
    """Your devices, oldest first (an admin sees everyone's); never their secrets."""
    devices, total = await service.list_devices(principal, limit, offset)
    return DeviceList(data=[DeviceOut.model_validate(d) for d in devices], total=total)


@router.get("/{device_id}", response_model=DeviceOut, responses=ONE_ERRORS)
async def get_device(device_id: DeviceId, principal: CurrentPrincipal, service: Service) -> DeviceOut:
    """One of your devices (an admin: anyone's), without its secret."""
    return DeviceOut.model_validate(await service.get(principal, device_id))


@router.delete("/{device_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ONE_ERRORS)
async def delete_device(device_id: DeviceId, principal: CurrentPrincipal, service: Service) -> Response:
    """Delete a device; the broker refuses it from its next connect on."""
    await service.delete(principal, device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{device_id}/secret", response_model=DeviceCredentials, responses=ONE_ERRORS)
async def rotate_secret(
    device_id: DeviceId, principal: CurrentPrincipal, service: Service, runtime: RuntimeDep
) -> DeviceCredentials:
    """Give a device a new secret (shown only this once); the old one stops working."""
    rotated = await service.rotate(principal, device_id)
    return _credentials(rotated, runtime.settings)
