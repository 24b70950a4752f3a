; mura-fracture Windows installer (NSIS 3, Unicode).
;
; Packs the PyInstaller one-folder build (installers/mura.spec, built ON WINDOWS) into one
; setup .exe. Build procedure: installers/README.md, "Windows build". In short:
;   makensis /DVERSION=0.1.0 /DSRC_DIR=C:\src\mura\installers\dist\mura-fracture ^
;            /DOUT_FILE=C:\src\mura\installers\dist\mura-fracture-0.1.0-installer.exe installers\windows\mura.nsi
;
; Install modes: per-machine (Program Files, HKLM; needs admin) or per-user
; (%LOCALAPPDATA%\Programs, HKCU; no admin). The installer asks, or takes a flag.
; Silent install / uninstall (for software deployment tools):
;   mura-fracture-0.1.0-installer.exe /S /AllUsers           per-machine, default folder
;   mura-fracture-0.1.0-installer.exe /S /CurrentUser        per-user, no admin rights needed
;   mura-fracture-0.1.0-installer.exe /S /AllUsers /NOASSOC /D=D:\Apps\mura-fracture
;       /NOASSOC: do not register the .dcm file association
;       /D=...:   install folder; must be the LAST argument, no quotes, even with spaces
;   "<install folder>\uninstall.exe" /S /AllUsers        (or /CurrentUser: the mode it was installed in)
; Exit code 0 on success; 1 cancelled; 2 aborted (e.g. /AllUsers without admin rights).
;
; Per-user settings, cache and logs are NOT in the install folder (see desktop/paths.py):
; %APPDATA%\mura-fracture and %LOCALAPPDATA%\mura-fracture. The uninstaller leaves them, as
; they belong to each user (installers/README.md says how to remove them).

Unicode true
SetCompressor /SOLID lzma
SetCompressorDictSize 64

!ifndef VERSION
  !define VERSION "0.0.0"
!endif
!ifndef SRC_DIR
  !error "pass /DSRC_DIR=<the PyInstaller output folder installers\dist\mura-fracture>"
!endif
!ifndef OUT_FILE
  !define OUT_FILE "mura-fracture-${VERSION}-installer.exe"
!endif
!ifndef ICON_FILE
  !define ICON_FILE "../icons/mura-fracture.ico"  ; makensis runs from this folder
!endif

!define APP_ID "mura-fracture"
!define APP_NAME "Mura Fracture"
!define VIEWER_NAME "Mura Fracture Viewer"
!define PUBLISHER "mura-fracture project"
!define PROGID "MuraFracture.DicomFile"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP_ID}"
!define APP_KEY "Software\${APP_ID}"
; A file only this installer writes: the uninstaller refuses to delete a folder without it,
; so an install pointed at e.g. C:\ or a user's Documents can never wipe that folder.
!define MARKER "mura-fracture.installed"

; ---------------------------------------------------------------------------------------
; Per-machine / per-user (MultiUser.nsh): /AllUsers and /CurrentUser on the command line
!define MULTIUSER_EXECUTIONLEVEL Highest
!define MULTIUSER_MUI
!define MULTIUSER_INSTALLMODE_COMMANDLINE
!define MULTIUSER_USE_PROGRAMFILES64
!define MULTIUSER_INSTALLMODE_INSTDIR "${APP_ID}"
!define MULTIUSER_INSTALLMODE_INSTDIR_REGISTRY_KEY "${APP_KEY}"
!define MULTIUSER_INSTALLMODE_INSTDIR_REGISTRY_VALUENAME "InstallDir"
!define MULTIUSER_INSTALLMODE_DEFAULT_REGISTRY_KEY "${APP_KEY}"
!define MULTIUSER_INSTALLMODE_DEFAULT_REGISTRY_VALUENAME "InstallMode"

!include MultiUser.nsh
!include MUI2.nsh
!include LogicLib.nsh
!include FileFunc.nsh
!include x64.nsh
!include WinVer.nsh
!include Sections.nsh

Name "${APP_NAME} ${VERSION}"
OutFile "${OUT_FILE}"
BrandingText "${APP_NAME} ${VERSION} - research use only, not for diagnostic use"
ShowInstDetails show
ShowUninstDetails show

VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APP_NAME}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "CompanyName" "${PUBLISHER}"
VIAddVersionKey "FileDescription" "${APP_NAME} installer"
VIAddVersionKey "LegalCopyright" "Apache-2.0; bundled components under their own licences"

!define MUI_ICON "${ICON_FILE}"
!define MUI_UNICON "${ICON_FILE}"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\mura-viewer.exe"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${VIEWER_NAME}"
!define MUI_FINISHPAGE_RUN_NOTCHECKED

!insertmacro MUI_PAGE_WELCOME
!insertmacro MULTIUSER_PAGE_INSTALLMODE
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH

!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "English"

; ---------------------------------------------------------------------------------------
Section "!${APP_NAME} (viewer and screener)" SecMain
  SectionIn RO
  ; Replace an earlier version's program files, never anything else in the folder.
  ${If} ${FileExists} "$INSTDIR\${MARKER}"
    RMDir /r "$INSTDIR\_internal"
    RMDir /r "$INSTDIR\model"
  ${EndIf}
  SetOutPath "$INSTDIR"
  File /r "${SRC_DIR}/*"
  FileOpen $0 "$INSTDIR\${MARKER}" w
  FileWrite $0 "${APP_ID} ${VERSION} $MultiUser.InstallMode$\r$\n"
  FileClose $0
  WriteUninstaller "$INSTDIR\uninstall.exe"

  ; Remember the folder and mode (MultiUser.nsh reads these on upgrade and uninstall).
  WriteRegStr SHCTX "${APP_KEY}" "InstallDir" "$INSTDIR"
  WriteRegStr SHCTX "${APP_KEY}" "InstallMode" "$MultiUser.InstallMode"
  WriteRegStr SHCTX "${APP_KEY}" "Version" "${VERSION}"

  ; Apps & features entry
  WriteRegStr SHCTX "${UNINST_KEY}" "DisplayName" "${APP_NAME}"
  WriteRegStr SHCTX "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr SHCTX "${UNINST_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr SHCTX "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\mura-viewer.exe,0"
  WriteRegStr SHCTX "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr SHCTX "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe" /$MultiUser.InstallMode'
  WriteRegStr SHCTX "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S /$MultiUser.InstallMode'
  WriteRegDWORD SHCTX "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD SHCTX "${UNINST_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  IntFmt $0 "0x%08X" $0
  WriteRegDWORD SHCTX "${UNINST_KEY}" "EstimatedSize" "$0"
SectionEnd

Section "Start menu shortcuts" SecShortcuts
  ; SetShellVarContext (set by MultiUser) makes $SMPROGRAMS the all-users or the user's menu.
  CreateDirectory "$SMPROGRAMS\${APP_NAME}"
  CreateShortcut "$SMPROGRAMS\${APP_NAME}\${VIEWER_NAME}.lnk" "$INSTDIR\mura-viewer.exe" "" \
    "$INSTDIR\mura-viewer.exe" 0
  ; The screener is a console tool: a shortcut that opens a prompt showing its help.
  CreateShortcut "$SMPROGRAMS\${APP_NAME}\Mura Screen (command prompt).lnk" "$SYSDIR\cmd.exe" \
    '/k "$INSTDIR\mura-screen.exe" --help' "$INSTDIR\mura-viewer.exe" 0
  CreateShortcut "$SMPROGRAMS\${APP_NAME}\Uninstall ${APP_NAME}.lnk" "$INSTDIR\uninstall.exe" \
    "/$MultiUser.InstallMode"
SectionEnd

Section "Open .dcm files with the viewer" SecAssoc
  ; A ProgID plus an OpenWithProgids entry: adds the viewer to "Open with" for .dcm without
  ; taking the default away from a PACS viewer already installed; becomes the default only
  ; when .dcm had none.
  WriteRegStr SHCTX "Software\Classes\${PROGID}" "" "DICOM image"
  WriteRegStr SHCTX "Software\Classes\${PROGID}\DefaultIcon" "" "$INSTDIR\mura-viewer.exe,0"
  WriteRegStr SHCTX "Software\Classes\${PROGID}\shell\open" "" "Open with ${VIEWER_NAME}"
  WriteRegStr SHCTX "Software\Classes\${PROGID}\shell\open\command" "" '"$INSTDIR\mura-viewer.exe" "%1"'
  WriteRegStr SHCTX "Software\Classes\.dcm\OpenWithProgids" "${PROGID}" ""
  ReadRegStr $0 HKCR ".dcm" ""
  ${If} $0 == ""
    WriteRegStr SHCTX "Software\Classes\.dcm" "" "${PROGID}"
    WriteRegStr SHCTX "Software\Classes\.dcm" "Content Type" "application/dicom"
  ${EndIf}
  WriteRegStr SHCTX "Software\Classes\Applications\mura-viewer.exe\shell\open\command" "" \
    '"$INSTDIR\mura-viewer.exe" "%1"'
  WriteRegStr SHCTX "Software\Classes\Applications\mura-viewer.exe\SupportedTypes" ".dcm" ""
  WriteRegStr SHCTX "${APP_KEY}" "Association" "1"
  System::Call 'shell32::SHChangeNotify(i 0x08000000, i 0, p 0, p 0)'  ; SHCNE_ASSOCCHANGED
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecMain} "mura-viewer, mura-screen, the runtime and the model bundle."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecShortcuts} "Start menu entries for the viewer, the screener and the uninstaller."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecAssoc} "Add the viewer to 'Open with' for .dcm files (the default only if .dcm has none)."
!insertmacro MUI_FUNCTION_DESCRIPTION_END

; ---------------------------------------------------------------------------------------
; Functions come after the sections so ${SecAssoc} is defined.
Var NoAssoc

; ---------------------------------------------------------------------------------------
Function .onInit
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP|MB_OK "${APP_NAME} needs 64-bit Windows." /SD IDOK
    Abort
  ${EndIf}
  ${IfNot} ${AtLeastWin10}
    MessageBox MB_ICONSTOP|MB_OK "${APP_NAME} needs Windows 10 or later." /SD IDOK
    Abort
  ${EndIf}
  SetRegView 64
  !insertmacro MULTIUSER_INIT
  StrCpy $NoAssoc "0"
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/NOASSOC" $R1
  ${IfNot} ${Errors}
    StrCpy $NoAssoc "1"
    !insertmacro UnselectSection ${SecAssoc}
  ${EndIf}
FunctionEnd

Function un.onInit
  SetRegView 64
  !insertmacro MULTIUSER_UNINIT
FunctionEnd

; ---------------------------------------------------------------------------------------
Section "Uninstall"
  Delete "$SMPROGRAMS\${APP_NAME}\${VIEWER_NAME}.lnk"
  Delete "$SMPROGRAMS\${APP_NAME}\Mura Screen (command prompt).lnk"
  Delete "$SMPROGRAMS\${APP_NAME}\Uninstall ${APP_NAME}.lnk"
  RMDir "$SMPROGRAMS\${APP_NAME}"

  ; File association: remove only what points at this install.
  DeleteRegValue SHCTX "Software\Classes\.dcm\OpenWithProgids" "${PROGID}"
  DeleteRegKey /ifempty SHCTX "Software\Classes\.dcm\OpenWithProgids"
  ReadRegStr $0 SHCTX "Software\Classes\.dcm" ""
  ${If} $0 == "${PROGID}"
    DeleteRegValue SHCTX "Software\Classes\.dcm" ""
    DeleteRegValue SHCTX "Software\Classes\.dcm" "Content Type"
  ${EndIf}
  DeleteRegKey /ifempty SHCTX "Software\Classes\.dcm"
  DeleteRegKey SHCTX "Software\Classes\${PROGID}"
  DeleteRegKey SHCTX "Software\Classes\Applications\mura-viewer.exe"
  System::Call 'shell32::SHChangeNotify(i 0x08000000, i 0, p 0, p 0)'

  DeleteRegKey SHCTX "${UNINST_KEY}"
  DeleteRegKey SHCTX "${APP_KEY}"

  ${If} ${FileExists} "$INSTDIR\${MARKER}"
    RMDir /r "$INSTDIR\_internal"
    RMDir /r "$INSTDIR\model"
    Delete "$INSTDIR\mura-viewer.exe"
    Delete "$INSTDIR\mura-screen.exe"
    Delete "$INSTDIR\${MARKER}"
    Delete "$INSTDIR\uninstall.exe"
    RMDir "$INSTDIR"  ; only if empty: files a user put there stay
  ${Else}
    DetailPrint "$INSTDIR has no ${MARKER}: not deleting its files"
  ${EndIf}
SectionEnd
